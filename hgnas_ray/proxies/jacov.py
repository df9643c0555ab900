"""Jacobian covariance (Mellor et al., NASWOT v1) as NASLib's ``jacov`` measure."""

from __future__ import annotations

import numpy as np

from hgnas_ray.proxies.context import ProbeContext
from hgnas_ray.proxies.probe_pass import probe_pass
from hgnas_ray.proxies.registry import Proxy, register_proxy

_K = 1e-5


def jacov(ctx: ProbeContext) -> float:
    """-sum(log(v + k) + 1/(v + k)), v = eigenvalues of the correlation matrix of the
    per-sample input Jacobians of sum(logits), k = 1e-5.

    NASLib uses ``np.linalg.eig``; the matrix is symmetric, so ``eigvalsh`` gives the same
    eigenvalues without spurious imaginary parts. A zero-variance Jacobian row makes the
    correlation undefined: NaN ("nonfinite").
    """
    jacobian = probe_pass(ctx).input_jacobian
    assert jacobian is not None
    if jacobian.shape[0] < 2:
        raise ValueError(f"jacov needs at least 2 samples; got {jacobian.shape[0]}")
    with np.errstate(invalid="ignore", divide="ignore"):
        corrs = np.corrcoef(jacobian.double().cpu().numpy())
        if not np.isfinite(corrs).all():
            return float("nan")
        v = np.linalg.eigvalsh(corrs)
        return float(-np.sum(np.log(v + _K) + 1.0 / (v + _K)))


register_proxy(Proxy(
    name="jacov", fn=jacov, needs=frozenset({"forward", "backward"}),
    description="NASLib jacob_cov: eigenvalue score of the correlation of input Jacobians",
    shared=frozenset({"input_jacobian"}),
))
