"""Conditional continuous normalizing flow over G-VAE latents (DESIGN 4), after FFJORD.

dz/dt = f(z, t, c): stacked concat-squash layers (tanh between them) whose gates and biases see
the context [t, c]. Data z(0) flows to the base z(T) ~ N(0, I); the end time T is learnable (init
0.5, kept positive as the square of a parameter, as FFJORD does). T enters as a time rescaling:
the solver integrates s in [0, 1] of T * f(z, sT, c), so T is an ordinary parameter and the adjoint
and direct gradients treat it alike.

log p(z | c) = log N(z(T); 0, I) - delta, where delta = integral of -tr(df/dz) dt (the ODE's second
output), with the Hutchinson estimator tr(A) ~ e^T A e; the noise e (Rademacher or Gaussian) is
drawn once per solve from the caller's generator and held fixed over the solve (it rides in the ODE
state with zero derivative, so the adjoint pass sees the same e). Sampling draws
z(T) ~ N(0, tau^2 I) and integrates back to t = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from hgnas_ray.errors import ConfigError, DataError
from hgnas_ray.models._random import rademacher, randn

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun3", "rk4")
TRACE_NOISE = ("rademacher", "gaussian")


@dataclass(frozen=True)
class CCNFConfig:
    latent_dim: int = 256
    cond_dim: int = 3
    hidden_dim: int = 512
    num_layers: int = 3  # concat-squash layers: latent -> hidden -> ... -> latent
    init_end_time: float = 0.5
    train_end_time: bool = True
    method: str = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    step_size: float | None = None  # for fixed-grid methods, as a fraction of [0, T]
    adjoint: bool = True  # False: backpropagate through the solver (plain odeint)
    trace_noise: str = "rademacher"

    def validate(self) -> CCNFConfig:
        methods = ADAPTIVE_METHODS + FIXED_METHODS
        if self.method not in methods:
            raise ConfigError(f"unknown CCNF solver {self.method!r}; valid: {', '.join(methods)}")
        if self.method in FIXED_METHODS and not (self.step_size and self.step_size > 0):
            raise ConfigError(f"solver {self.method!r} uses a fixed grid: set step_size > 0 (a "
                              f"fraction of [0, T], e.g. 0.25); got {self.step_size!r}")
        if self.trace_noise not in TRACE_NOISE:
            raise ConfigError(f"unknown trace_noise {self.trace_noise!r}; valid: "
                              f"{', '.join(TRACE_NOISE)}")
        if min(self.latent_dim, self.cond_dim, self.hidden_dim, self.num_layers) < 1:
            raise ConfigError("CCNF sizes (latent_dim, cond_dim, hidden_dim, num_layers) must be "
                              f">= 1; got {self.latent_dim, self.cond_dim, self.hidden_dim}, "
                              f"{self.num_layers}")
        if not self.init_end_time > 0:
            raise ConfigError(f"init_end_time must be > 0; got {self.init_end_time}")
        return self


class ConcatSquashLinear(nn.Module):
    """y = W x * sigmoid(G ctx + g) + B ctx (FFJORD's concat-squash layer).

    Shapes: x (N, dim_in), ctx (N, dim_ctx) -> (N, dim_out).
    """

    def __init__(self, dim_in: int, dim_out: int, dim_ctx: int) -> None:
        super().__init__()
        self.dim_in, self.dim_out, self.dim_ctx = dim_in, dim_out, dim_ctx
        self.layer = nn.Linear(dim_in, dim_out)
        self.hyper_gate = nn.Linear(dim_ctx, dim_out)
        self.hyper_bias = nn.Linear(dim_ctx, dim_out, bias=False)

    def reset_parameters(self) -> None:
        for lin in (self.layer, self.hyper_gate, self.hyper_bias):
            lin.reset_parameters()

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        return self.layer(x) * torch.sigmoid(self.hyper_gate(ctx)) + self.hyper_bias(ctx)

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, dim_out={self.dim_out}, dim_ctx={self.dim_ctx}"


class CCNFDynamics(nn.Module):
    """The ODE right-hand side in rescaled time s in [0, 1].

    Shapes: state (z (N, D), c (N, C)) -> (dz, 0), or with the density terms
    (z (N, D), logp (N, 1), c (N, C), e (N, D)) -> (dz, -T e^T (df/dz) e, 0, 0).
    """

    def __init__(self, config: CCNFConfig) -> None:
        super().__init__()
        c = config
        dims = [c.latent_dim] + [c.hidden_dim] * (c.num_layers - 1) + [c.latent_dim]
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b, 1 + c.cond_dim)
                                    for a, b in zip(dims[:-1], dims[1:], strict=True))
        sqrt_t = torch.tensor(math.sqrt(c.init_end_time))
        if c.train_end_time:
            self.sqrt_end_time = nn.Parameter(sqrt_t)
        else:
            self.register_buffer("sqrt_end_time", sqrt_t)
        self._init_end_time = c.init_end_time

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()
        with torch.no_grad():
            self.sqrt_end_time.fill_(math.sqrt(self._init_end_time))

    @property
    def end_time(self) -> Tensor:
        return self.sqrt_end_time * self.sqrt_end_time

    def velocity(self, s: Tensor, z: Tensor, c: Tensor) -> Tensor:
        """dz/ds = T f(z, sT, c)."""
        end_time = self.end_time.to(z.dtype)
        ctx = torch.cat([(s * end_time).to(z.dtype).expand(len(z), 1), c], dim=1)
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(h, ctx)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return end_time * h

    def forward(self, s: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if len(state) == 2:
            z, c = state
            return self.velocity(s, z, c), torch.zeros_like(c)
        z, _, c, noise = state
        with torch.enable_grad():
            if not z.requires_grad:  # e.g. log_prob under no_grad: the trace still needs df/dz
                z = z.detach().requires_grad_(True)
            dz = self.velocity(s, z, c)
            (vjp,) = torch.autograd.grad(dz, z, noise, create_graph=True)
        trace = (vjp * noise).sum(dim=1, keepdim=True)
        return dz, -trace, torch.zeros_like(c), torch.zeros_like(noise)


class CCNF(nn.Module):
    """Conditional CNF: density and sampling of latents z given condition vectors c.

    Shapes:
        log_prob: z (N, D), c (N, C) or (C,) -> (N,)
        forward / loss: z (N, D), c -> scalar mean negative log-likelihood
        sample: c (N, C) or (C,) (with n) -> (N, D)
    """

    def __init__(self, config: CCNFConfig | None = None) -> None:
        super().__init__()
        self.config = (config or CCNFConfig()).validate()
        self.dynamics = CCNFDynamics(self.config)

    def reset_parameters(self) -> None:
        self.dynamics.reset_parameters()

    @property
    def end_time(self) -> Tensor:
        return self.dynamics.end_time

    def log_prob(self, z: Tensor, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if z.dim() != 2 or z.size(1) != self.config.latent_dim:
            raise DataError(f"CCNF expects z of shape (N, {self.config.latent_dim}); got "
                            f"{tuple(z.shape)}")
        c = self._condition(c, len(z), z)
        noise = self._trace_noise(tuple(z.shape), generator, z)
        logp0 = z.new_zeros(len(z), 1)
        z_base, delta, _, _ = self._solve((z, logp0, c, noise), reverse=False)
        return _standard_normal_logprob(z_base) - delta.squeeze(1)

    def forward(self, z: Tensor, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return -self.log_prob(z, c, generator).mean()

    def loss(self, z: Tensor, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Maximum-likelihood loss: the mean negative log-likelihood (nats per latent)."""
        return self(z, c, generator)

    @torch.no_grad()
    def sample(self, c: Tensor, n: int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw z(T) ~ N(0, temperature^2 I) and integrate it back to data space.

        `c` is one condition (C,) shared by `n` samples, or one per sample (N, C).
        temperature 0.4 for cluster-conditioned generation, 1.0 for mutation (DESIGN 4).
        """
        if c.dim() == 1:
            if n is None:
                raise DataError("sample(c, n): a single condition of shape (C,) needs n")
            c = c.expand(n, -1)
        elif n is not None and n != len(c):
            raise DataError(f"sample got {len(c)} conditions but n={n}; pass n=None or one "
                            "condition of shape (C,)")
        like = next(self.parameters())
        c = self._condition(c, len(c), like)
        z_base = temperature * randn((len(c), self.config.latent_dim), generator, like)
        z, _ = self._solve((z_base, c), reverse=True, adjoint=False)
        return z

    def _solve(self, state: tuple[Tensor, ...], reverse: bool,
               adjoint: bool | None = None) -> tuple[Tensor, ...]:
        cfg = self.config
        span = torch.tensor([1.0, 0.0] if reverse else [0.0, 1.0], dtype=state[0].dtype,
                            device=state[0].device)
        options = {"step_size": cfg.step_size} if cfg.method in FIXED_METHODS else None
        kwargs = dict(method=cfg.method, atol=cfg.atol, rtol=cfg.rtol, options=options)
        if cfg.adjoint if adjoint is None else adjoint:
            params = tuple(p for p in self.dynamics.parameters() if p.requires_grad)
            out = odeint_adjoint(self.dynamics, state, span, adjoint_params=params, **kwargs)
        else:
            out = odeint(self.dynamics, state, span, **kwargs)
        return tuple(x[-1] for x in out)

    def _condition(self, c: Tensor, n: int, like: Tensor) -> Tensor:
        c = torch.as_tensor(c).to(device=like.device, dtype=like.dtype)
        if c.dim() == 1:
            c = c.expand(n, -1)
        if c.shape != (n, self.config.cond_dim):
            raise DataError(f"CCNF expects conditions of shape ({n}, {self.config.cond_dim}) or "
                            f"({self.config.cond_dim},); got {tuple(c.shape)}")
        return c

    def _trace_noise(self, shape: tuple[int, ...], generator: torch.Generator | None,
                     like: Tensor) -> Tensor:
        if self.config.trace_noise == "gaussian":
            return randn(shape, generator, like)
        return rademacher(shape, generator, like)

    def extra_repr(self) -> str:
        c = self.config
        return (f"latent_dim={c.latent_dim}, cond_dim={c.cond_dim}, hidden_dim={c.hidden_dim}, "
                f"num_layers={c.num_layers}, method={c.method!r}, adjoint={c.adjoint}")


def _standard_normal_logprob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension. Shapes: (N, D) -> (N,)."""
    return -0.5 * (z.pow(2).sum(dim=1) + z.size(1) * math.log(2 * math.pi))
