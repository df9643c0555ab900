"""Starting or joining Ray."""

from __future__ import annotations

import os

import ray

from hgnas_ray.config import RayConfig


def init_ray(config: RayConfig) -> None:
    """Join `config.address` (a cluster, e.g. under `ray job submit`) or start Ray in-process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if config.address:
        ray.init(address=config.address, log_to_driver=True)
        return
    ray.init(num_cpus=config.num_cpus, include_dashboard=config.include_dashboard,
             log_to_driver=True)
