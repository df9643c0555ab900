"""A compact decoder-only transformer (nanoGPT-like) over the layout vocabulary.

Pre-LayerNorm blocks of causal self-attention and a GELU MLP, learned position embeddings, an
untied output head (safetensors stores no shared tensors). Right padding needs no attention mask:
causal attention never looks past a position, and pad positions are excluded from the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgnas_ray.errors import ConfigError
from hgnas_ray.models.seqgen.vocab import MAX_SEQUENCE_LENGTH, PROMPT_LENGTH


@dataclass(frozen=True)
class SeqGenConfig:
    vocab_size: int = 0  # 0: set from the vocabulary when the model is built
    block_size: int = MAX_SEQUENCE_LENGTH
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0  # > 0 draws from torch's global RNG, so a resumed run would differ
    bias: bool = False

    def validate(self) -> SeqGenConfig:
        if self.n_layer < 1 or self.n_head < 1 or self.n_embd < 1 or self.n_embd % self.n_head:
            raise ConfigError(f"seqgen needs n_layer, n_head >= 1 and n_embd a multiple of "
                              f"n_head; got {self.n_layer}, {self.n_head}, {self.n_embd}")
        if self.block_size < MAX_SEQUENCE_LENGTH:
            raise ConfigError(f"block_size must be >= {MAX_SEQUENCE_LENGTH} (the longest layout "
                              f"sequence); got {self.block_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}")
        return self

    def with_vocab(self, vocab_size: int) -> SeqGenConfig:
        return replace(self, vocab_size=vocab_size)


def tiny_config(vocab_size: int = 0) -> SeqGenConfig:
    """For tests: one layer, 32 wide."""
    return SeqGenConfig(vocab_size, n_layer=1, n_head=2, n_embd=32, dropout=0.0)


def small_config(vocab_size: int = 0) -> SeqGenConfig:
    """The default (about 0.9M parameters with 32 clusters)."""
    return SeqGenConfig(vocab_size)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SeqGenConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = (part.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for part in self.qkv(x).split(c, dim=2))  # each (B, heads, T, C / heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, config: SeqGenConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias),
                                 nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias),
                                 nn.Dropout(config.dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class SeqGen(nn.Module):
    """Next-token logits of layout sequences.

    Shapes:
        idx: (B, T) int64 token ids, T <= block_size -> logits (B, T, vocab_size)
    """

    def __init__(self, config: SeqGenConfig) -> None:
        super().__init__()
        config.validate()
        if config.vocab_size < 1:
            raise ConfigError("SeqGenConfig.vocab_size is unset; build the config with "
                              "config.with_vocab(len(vocabulary))")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nanoGPT's initialisation (N(0, 0.02), residual projections scaled by depth)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if name.endswith(("attn.proj", "mlp.2")) else 0.02
                nn.init.normal_(module.weight, 0.0, std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def forward(self, idx: Tensor) -> Tensor:
        _, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size "
                             f"{self.config.block_size}")
        positions = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def __repr__(self) -> str:
        c = self.config
        return (f"SeqGen(vocab_size={c.vocab_size}, block_size={c.block_size}, "
                f"n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, "
                f"dropout={c.dropout}, params={self.num_params():,})")


def sequence_loss(model: nn.Module, tokens: Tensor, pad_id: int = 0) -> dict[str, Tensor]:
    """Mean next-token cross-entropy over the layout tokens (after the prompt, before padding),
    and the fraction predicted right (argmax).

    Shapes: tokens (B, T) int64, right-padded with `pad_id`; T > PROMPT_LENGTH.
    """
    logits = model(tokens[:, :-1])  # (B, T-1, V): position i predicts token i + 1
    targets = tokens[:, 1:].clone()
    targets[:, : PROMPT_LENGTH - 1] = -100  # the prompt is given, not predicted
    targets[targets == pad_id] = -100
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=-100)
    counted = targets != -100
    correct = (logits.argmax(-1) == targets) & counted
    accuracy = correct.sum().float() / counted.sum().clamp(min=1)
    return {"loss": loss, "token_accuracy": accuracy.detach()}
