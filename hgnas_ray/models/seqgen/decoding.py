"""Grammar-constrained, budget-aware decoding of macro layouts (DESIGN 4).

At every step only tokens that keep the sequence a prefix of a valid layout (DESIGN 2.2: widths,
strides, 1..4 repeats, fewer than 20 cells, at most 3 stride-2 stages, at least one stage) and
still able to fit the budget are drawn. "Able to fit" is decided with the cost model's lower
bound of any network completing the prefix (cells not chosen yet count at their cheapest):
a token is kept when that bound is within every limit.

Drawing is exact rejection sampling: a token is drawn from the model's distribution over the
grammar's tokens, checked, and on failure removed and the draw repeated - which samples the
masked distribution while checking only the tokens drawn. Parameters and MACs are two limits, so
a prefix within both lower bounds may still have no completion within both at once; such a dead
end undoes the last token (it is not drawn again at that place) and decoding continues. Every
sequence it returns parses into a valid layout whose lower bound fits the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from hgnas_ray.errors import BudgetError, ConfigError
from hgnas_ray.models.seqgen.vocab import (
    MAX_CELLS,
    MAX_DOWNSAMPLES,
    MAX_REPEATS,
    PROMPT_LENGTH,
    MacroLayout,
    SeqVocabulary,
    StageLayout,
)


@dataclass(frozen=True)
class PartialLayout:
    """A layout prefix: the stem, complete stages, the fields of the stage being written (in
    token order: cluster, stride, channels), the final width once <head> was written."""

    stem: int | None = None
    stages: tuple[StageLayout, ...] = ()
    current: tuple[int, ...] = ()  # cluster, stride, channels of an unfinished stage
    head: bool = False
    final: int | None = None
    done: bool = False

    @property
    def num_cells(self) -> int:
        return sum(s.repeats for s in self.stages)

    @property
    def num_downsamples(self) -> int:
        return sum(s.stride == 2 for s in self.stages) + (
            len(self.current) >= 2 and self.current[1] == 2)

    def cost_key(self) -> tuple:
        """What the cost depends on: everything but the cluster ids (cells are unknown).

        (stem, ((stride, channels, repeats), ...), (stride, channels) of the unfinished stage so
        far or None, head written, final width)."""
        return (self.stem, tuple((s.stride, s.channels, s.repeats) for s in self.stages),
                self.current[1:] if self.current else None, self.head, self.final)

    def to_layout(self) -> MacroLayout:
        assert self.done, "only a finished prefix is a layout"
        return MacroLayout(self.stem, self.stages, self.final)


# lower bound (params, MACs) of every network that completes a prefix, for a task
LowerBound = Callable[[object, PartialLayout], tuple[int, int]]


class LayoutGrammar:
    """Which tokens may follow a prefix, and the prefix a token list spells."""

    def __init__(self, vocab: SeqVocabulary) -> None:
        self.vocab = vocab

    def parse(self, ids: Sequence[int]) -> PartialLayout:
        """The prefix of layout ids (after the prompt); assumes they follow the grammar."""
        prefix = PartialLayout()
        for token in ids:
            prefix = self.advance(prefix, int(token))
        return prefix

    def advance(self, prefix: PartialLayout, token: int) -> PartialLayout:
        v = self.vocab
        if token == v.end:
            return replace(prefix, done=True)
        if token == v.head:
            return replace(prefix, head=True)
        value = v.value(token)
        if prefix.stem is None:
            return replace(prefix, stem=value)
        if prefix.head:
            return replace(prefix, final=value)
        if len(prefix.current) < 3:
            return replace(prefix, current=(*prefix.current, value))
        stage = StageLayout(*prefix.current, repeats=value)
        return replace(prefix, stages=(*prefix.stages, stage), current=())

    def allowed(self, prefix: PartialLayout) -> tuple[int, ...]:
        """Token ids the grammar and the space's rules allow next (cost aside)."""
        v = self.vocab
        if prefix.done:
            return ()
        if prefix.stem is None:
            return v.width_ids
        if prefix.head:
            return (v.end,) if prefix.final is not None else v.width_ids
        step = len(prefix.current)
        if step == 0:
            more = v.cluster_ids if prefix.num_cells < MAX_CELLS else ()
            return (*more, v.head) if prefix.stages else more
        if step == 1:
            return v.stride_ids if prefix.num_downsamples < MAX_DOWNSAMPLES else v.stride_ids[:1]
        if step == 2:
            return v.width_ids
        return v.repeat_ids[: min(MAX_REPEATS, MAX_CELLS - prefix.num_cells)]


class BudgetCheck:
    """Whether a prefix can still be completed within a budget (lower bounds, memoised)."""

    def __init__(self, task, budget, lower_bound: LowerBound) -> None:
        self.task, self.budget, self.lower_bound = task, budget, lower_bound
        self._memo: dict[PartialLayout, bool] = {}
        self.evaluations = 0

    def fits(self, prefix: PartialLayout) -> bool:
        if not self.budget.is_limited:  # the grammar alone keeps every prefix completable
            return True
        key = prefix
        if key not in self._memo:
            self.evaluations += 1
            params, macs = self.lower_bound(self.task, prefix)
            b = self.budget
            self._memo[key] = ((b.max_params is None or params <= b.max_params)
                               and (b.max_macs is None or macs <= b.max_macs))
        return self._memo[key]

    def check_feasible(self) -> None:
        """`BudgetError` naming the smallest cost in the budget's units when no network of the
        task can meet a limit."""
        params, macs = self.lower_bound(self.task, PartialLayout())
        b = self.budget
        if b.max_params is not None and params > b.max_params:
            raise BudgetError(f"no macro network for this task ({_task_text(self.task)}) has at "
                              f"most {b.max_params:,} parameters: the smallest has {params:,} "
                              f"parameters; raise --max-params to at least {params:,}")
        if b.max_macs is not None and macs > b.max_macs:
            raise BudgetError(f"no macro network for this task ({_task_text(self.task)}) needs "
                              f"at most {b.max_macs:,} MACs per sample: the smallest needs "
                              f"{macs:,} MACs; raise --max-macs to at least {macs:,} (MACs, "
                              "not FLOPs: FLOPs = 2 x MACs)")


def _task_text(task) -> str:
    return f"{task.num_classes} classes, {task.input_size}x{task.input_size}x{task.in_channels}"


class _GaveUp(Exception):
    """A sequence spent its budget checks (caught by `_decode_chunk`, which restarts it)."""


@dataclass
class _Sequence:
    """One sequence being decoded, with the tokens refused at each position after the prompt."""

    ids: list[int]
    banned: dict[int, set[int]]
    prefix: PartialLayout = PartialLayout()  # what ids[PROMPT_LENGTH:] spell
    checks: int = 0


class LayoutDecoder:
    """Samples layouts from a `SeqGen` under the grammar and a budget.

    `lower_bound(task, prefix) -> (params, macs)` bounds every network completing a prefix
    from below (see `hgnas_ray.models.seqgen.costs`). `max_checks` caps the budget checks per
    sequence: a sequence that spends them (a long backtracking search, e.g. at a budget that
    is feasible per limit but hardly for both at once) starts again from the prompt, up to
    `max_restarts` times per chunk before decoding gives up.
    """

    def __init__(self, model: nn.Module, vocab: SeqVocabulary, lower_bound: LowerBound,
                 max_checks: int = 2_000, chunk: int = 64, max_restarts: int = 64) -> None:
        self.model, self.vocab, self.lower_bound = model, vocab, lower_bound
        self.grammar = LayoutGrammar(vocab)
        self.max_checks, self.chunk, self.max_restarts = max_checks, chunk, max_restarts

    @torch.no_grad()
    def sample(self, task, budget, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None,
               lower_bound: LowerBound | None = None) -> list[MacroLayout]:
        """`n` layouts (valid, lower bound within the budget); the same generator state gives
        the same layouts. `lower_bound` replaces the decoder's for this call."""
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0; got {temperature}")
        check = BudgetCheck(task, budget, lower_bound or self.lower_bound)
        check.check_feasible()
        generator = generator or torch.Generator().manual_seed(0)
        prompt = self.vocab.prompt(task, budget)
        was_training = self.model.training
        self.model.eval()
        try:
            layouts: list[MacroLayout] = []
            while len(layouts) < n:
                size = min(self.chunk, n - len(layouts))
                layouts += self._decode_chunk(prompt, size, temperature, generator, check)
        finally:
            self.model.train(was_training)
        return layouts

    def _decode_chunk(self, prompt: list[int], size: int, temperature: float,
                      generator: torch.Generator, check: BudgetCheck) -> list[MacroLayout]:
        sequences = [_Sequence(list(prompt), {}) for _ in range(size)]
        active = list(range(size))
        restarts = 0
        device = next(self.model.parameters()).device
        while active:
            batch = [sequences[i].ids for i in active]
            lengths = torch.tensor([len(ids) for ids in batch])
            width = int(lengths.max())
            padded = torch.full((len(batch), width), self.vocab.pad, dtype=torch.long)
            for row, ids in enumerate(batch):
                padded[row, : len(ids)] = torch.tensor(ids)
            logits = self.model(padded.to(device))
            last = logits[torch.arange(len(batch)), lengths.to(device) - 1].float().cpu()
            still = []
            for row, index in enumerate(active):
                try:
                    self._step(sequences[index], last[row] / temperature, generator, check)
                except _GaveUp:  # a long dead end: this sequence starts again from the prompt
                    restarts += 1
                    if restarts > self.max_restarts:
                        raise BudgetError(f"decoding gave up: {restarts} sequences spent "
                                          f"{self.max_checks} budget checks each without a "
                                          "layout that fits; raise the budget") from None
                    sequences[index] = _Sequence(list(prompt), {})
                if sequences[index].ids[-1] != self.vocab.end:
                    still.append(index)
            active = still
        return [s.prefix.to_layout() for s in sequences]

    def _step(self, seq: _Sequence, logits: torch.Tensor, generator: torch.Generator,
              check: BudgetCheck) -> None:
        """Append one token, or undo the last one at a dead end."""
        position, prefix = len(seq.ids), seq.prefix
        banned = seq.banned.get(position, set())
        candidates = [t for t in self.grammar.allowed(prefix) if t not in banned]
        token = self._draw(candidates, logits, generator,
                           lambda t: check.fits(self.grammar.advance(prefix, t)), seq)
        if token is not None:
            seq.ids.append(token)
            seq.prefix = self.grammar.advance(prefix, token)
            return
        if position == PROMPT_LENGTH:
            raise BudgetError(f"no layout for this task fits the budget ({check.budget}) once "
                              "both limits, and the cells its clusters can hold, are counted "
                              "together; raise the budget")
        seq.banned.pop(position, None)
        seq.banned.setdefault(position - 1, set()).add(seq.ids.pop())
        seq.prefix = self.grammar.parse(seq.ids[PROMPT_LENGTH:])

    def _draw(self, candidates: list[int], logits: torch.Tensor, generator: torch.Generator,
              fits: Callable[[int], bool], seq: _Sequence) -> int | None:
        """Rejection sampling of softmax(logits) restricted to the candidates that fit."""
        if not candidates:
            return None
        weights = torch.softmax(logits[candidates].double(), dim=0).numpy().copy()
        open_ = np.ones(len(candidates), dtype=bool)
        while open_.any():
            total = float(weights.sum())
            u = float(torch.rand((), generator=generator, dtype=torch.float64))
            if total > 0:  # inverse CDF: zero-weight (refused) entries are never picked
                pick = int(np.searchsorted(np.cumsum(weights), u * total, side="right"))
                pick = min(pick, len(candidates) - 1)
            else:  # the rest underflowed to probability 0: draw among them uniformly
                left = np.flatnonzero(open_)
                pick = int(left[min(int(u * len(left)), len(left) - 1)])
            if not open_[pick]:  # u * total landed on the (rounded) end: take the last open
                pick = int(np.flatnonzero(open_)[-1])
            seq.checks += 1
            if seq.checks > self.max_checks:
                raise _GaveUp
            if fits(candidates[pick]):
                return candidates[pick]
            weights[pick], open_[pick] = 0.0, False
        return None
