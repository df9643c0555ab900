"""The cell G-VAE (DESIGN 4): graph convolutions over the 9-node cell encoding, a Gaussian latent
shaped by a metric objective on the cells' zero-cost (ZC) vectors, and dense decoders.

Encoder: a linear embedding of each node's features and its position (one-hot of the 9 node
indices), then `num_layers` residual GCN layers (no added self-loops: the encoding already has
them; GCN needs neither torch-sparse nor pyg-lib), each LayerNorm then ReLU, the 9 node
embeddings flattened, linear heads to mu and log-variance. Decoder: two MLPs from z to 9x9
adjacency logits and 9x15 feature logits. Condition head: an MLP from mu to the normalised ZC
vector.

Loss terms are per-element means, so their weights compare whatever the sizes:
  reconstruction = BCE(adjacency, cell-node upper triangle) + BCE(adjacency, the other entries)
                   + CE(op node's op or "unused") + CE(used node's kernel)   every cell
  kl             = KL(q(z|cell) || N(0, I)), averaged over latent dims   every cell
  triplet        = triplet margin loss on mu; per labelled anchor the positive is the labelled
                   cell closest in ZC space, the negative the farthest   labelled cells
  condition      = MSE(condition head(mu), ZC vector)                  labelled cells
  loss = reconstruction + kl_weight * kl + triplet_weight * triplet + condition_weight * condition
The features use cross-entropy, where DESIGN 4 says BCE: BCE over the 15 mostly-zero slots gave
each node's op a small share of a per-element mean, and op accuracy stayed near chance (0.21 after
30 epochs on 1,000 cells; 0.64 with cross-entropy). The fixed-0 "unused" logit keeps the rule of
`decode_cell` (a node is used when its best op's sigmoid reaches 0.5).
A cell is labelled when its ZC vector is present and finite. `forward` returns the loss terms, so
a DDP wrapper around the model syncs gradients as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.models._random import randn
from hgnas_ray.space.cell import NUM_NODES, OP_NODES, CellGenotype
from hgnas_ray.space.decoding import decode_cell
from hgnas_ray.space.encoding import GRAPH_NODES, NUM_FEATURES, ROLE_GLOBAL
from hgnas_ray.space.vocab import MAX_OP_SLOTS

OP_SLICE = slice(OP_NODES[0], OP_NODES[-1] + 1)  # the op nodes' rows of the features
KERNEL_SLOTS = slice(ROLE_GLOBAL + 1, NUM_FEATURES)  # the kernel one-hot columns

LOSS_TERMS = ("loss", "reconstruction", "adjacency", "features", "kl", "triplet", "condition")


@dataclass(frozen=True)
class GVAEConfig:
    hidden_dim: int = 512  # graph-convolution width
    num_layers: int = 4
    latent_dim: int = 256
    decoder_hidden: int = 512
    cond_hidden: int = 256
    cond_dim: int = 3  # length of the (normalised) ZC vector
    kl_weight: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float = 0.1
    condition_weight: float = 1.0

    def validate(self) -> GVAEConfig:
        sizes = {k: getattr(self, k) for k in ("hidden_dim", "num_layers", "latent_dim",
                                                "decoder_hidden", "cond_hidden", "cond_dim")}
        bad = {k: v for k, v in sizes.items() if v < 1}
        if bad:
            raise ConfigError(f"G-VAE sizes must be >= 1; got {bad}")
        return self


class GVAEOutput(NamedTuple):
    adj_logits: Tensor  # (B, 9, 9)
    feat_logits: Tensor  # (B, 9, 15)
    mu: Tensor  # (B, latent)
    logvar: Tensor  # (B, latent)


class GVAE(nn.Module):
    """Graph VAE over cell encodings (`hgnas_ray.space.encoding.cell_to_data`).

    Shapes:
        batch: a PyG `Batch` of B cells: x (B*9, 15), edge_index (2, E), adj (B, 9, 9) and,
            optionally, zc (B, cond_dim) with NaN rows for unlabelled cells.
        encode: -> mu, logvar (B, latent_dim)
        decode: z (B, latent_dim) -> adj_logits (B, 9, 9), feat_logits (B, 9, 15)
        predict_condition: mu (B, latent_dim) -> (B, cond_dim)
        forward: -> dict of scalar loss terms (`LOSS_TERMS`)
    """

    def __init__(self, config: GVAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = (config or GVAEConfig()).validate()
        # Each node's own features and position, embedded before any message passing: GCN
        # averages a node with its neighbours (the global node is everyone's), so without this
        # path the node's own op blurred, and without the position nothing told the decoder
        # which node a parent was (held-out op accuracy 0.34 and adjacency 0.80, i.e. no edge
        # learnt, after 10 epochs on 2,000 cells; 0.996 / 0.984 with it after 25 on 5,700).
        self.embed = nn.Linear(NUM_FEATURES + GRAPH_NODES, c.hidden_dim)
        self.convs = nn.ModuleList(GCNConv(c.hidden_dim, c.hidden_dim, add_self_loops=False)
                                   for _ in range(c.num_layers))
        # GCN's degree normalisation shrinks activations layer by layer (std 0.03 -> 0.004 over
        # 4 layers at init), so the latent's signal drowned in the reparameterisation noise and
        # the posterior collapsed (KL -> 0, op accuracy at chance). LayerNorm keeps the scale.
        self.norms = nn.ModuleList(nn.LayerNorm(c.hidden_dim) for _ in range(c.num_layers))
        self.register_buffer("node_position", torch.eye(GRAPH_NODES), persistent=False)
        self.mu_head = nn.Linear(GRAPH_NODES * c.hidden_dim, c.latent_dim)
        self.logvar_head = nn.Linear(GRAPH_NODES * c.hidden_dim, c.latent_dim)
        self.adj_decoder = _mlp(c.latent_dim, c.decoder_hidden, GRAPH_NODES * GRAPH_NODES)
        self.feat_decoder = _mlp(c.latent_dim, c.decoder_hidden, GRAPH_NODES * NUM_FEATURES)
        self.cond_head = _mlp(c.latent_dim, c.cond_hidden, c.cond_dim, depth=1)
        mask = torch.zeros(GRAPH_NODES, GRAPH_NODES, dtype=torch.bool)
        mask[:NUM_NODES, :NUM_NODES] = torch.ones(NUM_NODES, NUM_NODES).triu(1).bool()
        self.register_buffer("cell_edge_mask", mask, persistent=False)
        self._init_logvar()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self._init_logvar()

    def _init_logvar(self) -> None:
        """Start with small posterior noise (sigma = e^-2) so the decoder can use the latent."""
        nn.init.zeros_(self.logvar_head.weight)
        nn.init.constant_(self.logvar_head.bias, -4.0)

    def encode(self, batch) -> tuple[Tensor, Tensor]:
        num_graphs = _num_graphs(batch)
        position = self.node_position.repeat(num_graphs, 1).to(batch.x.dtype)
        h = F.relu(self.embed(torch.cat([batch.x, position], dim=1)))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + F.relu(norm(conv(h, batch.edge_index)))  # residual
        h = h.reshape(num_graphs, GRAPH_NODES * self.config.hidden_dim)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        adj = self.adj_decoder(z).view(-1, GRAPH_NODES, GRAPH_NODES)
        feats = self.feat_decoder(z).view(-1, GRAPH_NODES, NUM_FEATURES)
        return adj, feats

    def predict_condition(self, mu: Tensor) -> Tensor:
        return self.cond_head(mu)

    def reparameterize(self, mu: Tensor, logvar: Tensor,
                       generator: torch.Generator | None = None) -> Tensor:
        """z = mu + sigma * eps in training mode (eps from `generator`), mu in eval mode."""
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * logvar) * randn(tuple(mu.shape), generator, mu)

    def reconstruct(self, batch, generator: torch.Generator | None = None) -> GVAEOutput:
        mu, logvar = self.encode(batch)
        adj, feats = self.decode(self.reparameterize(mu, logvar, generator))
        return GVAEOutput(adj, feats, mu, logvar)

    def forward(self, batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        out = self.reconstruct(batch, generator)
        adj_target = batch.adj.to(out.adj_logits.dtype)
        feat_target = batch.x.view_as(out.feat_logits).to(out.feat_logits.dtype)
        adj_bce = F.binary_cross_entropy_with_logits(out.adj_logits, adj_target, reduction="none")
        mask = self.cell_edge_mask
        adjacency = adj_bce[:, mask].mean() + adj_bce[:, ~mask].mean()
        features = node_feature_loss(out.feat_logits, feat_target)
        kl = -0.5 * torch.mean(1 + out.logvar - out.mu.pow(2) - out.logvar.exp())
        zc, labelled = _zc_targets(batch, len(out.mu), self.config.cond_dim, out.mu)
        condition = _masked_mse(self.predict_condition(out.mu), zc, labelled)
        triplet = zc_triplet_loss(out.mu[labelled], zc[labelled], self.config.triplet_margin)
        c = self.config
        reconstruction = adjacency + features
        loss = (reconstruction + c.kl_weight * kl + c.triplet_weight * triplet
                + c.condition_weight * condition)
        return {"loss": loss, "reconstruction": reconstruction, "adjacency": adjacency,
                "features": features, "kl": kl, "triplet": triplet, "condition": condition}

    @torch.no_grad()
    def decode_cells(self, z: Tensor, space: str = "cell") -> list[CellGenotype]:
        """Decode latents (B, latent_dim) into B valid cells of `space` (`decode_cell`)."""
        adj, feats = self.decode(z)
        return [decode_cell(a, f, space) for a, f in zip(adj.cpu(), feats.cpu(), strict=True)]

    def extra_repr(self) -> str:
        c = self.config
        return (f"hidden_dim={c.hidden_dim}, num_layers={c.num_layers}, "
                f"latent_dim={c.latent_dim}, cond_dim={c.cond_dim}")


def node_feature_loss(feat_logits: Tensor, feat_target: Tensor) -> Tensor:
    """Cross-entropy of each op node's op (or "unused") plus that of each used node's kernel.

    Shapes: feat_logits, feat_target (B, 9, 15). The "unused" class has a fixed logit of 0, so a
    node is predicted used exactly when its best op logit is > 0, i.e. its op probability under
    a sigmoid is > 0.5: the rule `decode_cell` applies. Input, output and global nodes carry no
    op (their role flags are fixed by position) and add nothing.
    """
    op_logits = feat_logits[:, OP_SLICE, :MAX_OP_SLOTS]
    op_target = feat_target[:, OP_SLICE, :MAX_OP_SLOTS]
    used = op_target.sum(dim=-1) > 0.5  # (B, 6)
    unused_logit = op_logits.new_zeros(op_logits.shape[:-1] + (1,))
    classes = torch.where(used, op_target.argmax(dim=-1), MAX_OP_SLOTS)
    op_loss = F.cross_entropy(torch.cat([op_logits, unused_logit], dim=-1).flatten(0, 1),
                              classes.flatten())
    kernel_logits = feat_logits[:, OP_SLICE, KERNEL_SLOTS][used]
    kernel_target = feat_target[:, OP_SLICE, KERNEL_SLOTS][used].argmax(dim=-1)
    # `* 0.0` keeps the kernel logits in the graph for a batch without used nodes (DDP)
    kernel_loss = (F.cross_entropy(kernel_logits, kernel_target) if len(kernel_target)
                   else feat_logits.sum() * 0.0)
    return op_loss + kernel_loss


def zc_triplet_loss(mu: Tensor, zc: Tensor, margin: float) -> Tensor:
    """Triplet margin loss on latents; per anchor, positive/negative = closest/farthest in ZC.

    Shapes: mu (M, latent), zc (M, cond_dim), all rows labelled. Zero (still attached to `mu`'s
    graph) when M < 3, where no anchor has distinct positive and negative.
    """
    if len(mu) < 3:
        return mu.sum() * 0.0
    dist = torch.cdist(zc, zc)  # (M, M)
    eye = torch.eye(len(zc), dtype=torch.bool, device=zc.device)
    positive = dist.masked_fill(eye, float("inf")).argmin(dim=1)
    negative = dist.masked_fill(eye, float("-inf")).argmax(dim=1)
    return F.triplet_margin_loss(mu, mu[positive], mu[negative], margin=margin)


def _zc_targets(batch, num_graphs: int, cond_dim: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """ZC targets with unlabelled rows zeroed (no NaN reaches autograd) and the labelled mask."""
    zc = getattr(batch, "zc", None)
    if zc is None:
        return like.new_zeros(num_graphs, cond_dim), torch.zeros(
            num_graphs, dtype=torch.bool, device=like.device)
    zc = zc.to(like.dtype).view(num_graphs, -1)
    if zc.size(1) != cond_dim:
        raise DataError(f"batch.zc has {zc.size(1)} components but the G-VAE's cond_dim is "
                        f"{cond_dim}; build the dataset with matching ZC vectors or set cond_dim")
    labelled = torch.isfinite(zc).all(dim=1)
    return torch.where(labelled[:, None], zc, torch.zeros_like(zc)), labelled


def _masked_mse(pred: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
    # Multiplying by the mask (rather than indexing) keeps the head in the graph with an exactly
    # zero gradient for an all-unlabelled batch, which DDP needs (no unused parameters).
    weight = labelled.to(pred.dtype)[:, None]
    count = weight.sum().clamp_min(1.0) * pred.size(1)
    return ((pred - target).pow(2) * weight).sum() / count


def _num_graphs(batch) -> int:
    num_graphs = int(getattr(batch, "num_graphs", 1))
    if batch.x.size(0) != num_graphs * GRAPH_NODES or batch.x.size(1) != NUM_FEATURES:
        raise DataError(f"expected {num_graphs} cell graphs of {GRAPH_NODES} nodes with "
                        f"{NUM_FEATURES} features (x of shape ({num_graphs * GRAPH_NODES}, "
                        f"{NUM_FEATURES})); got x of shape {tuple(batch.x.shape)}. Build graphs "
                        "with hgnas_ray.space.encoding.cell_to_data")
    return num_graphs


def _mlp(dim_in: int, hidden: int, dim_out: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(dim_in if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, dim_out))
