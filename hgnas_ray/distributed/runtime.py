"""Starting or joining Ray."""

from __future__ import annotations

import logging
import os

import ray

from hgnas_ray.config import RayConfig

PACKAGE_LOGGER = "hgnas_ray"


def init_ray(config: RayConfig) -> None:
    """Join `config.address` (a cluster, e.g. under `ray job submit`) or start Ray in-process.

    Ray's own lines show only when the package logs at DEBUG (the entry points' --verbose):
    otherwise its INFO and WARNING lines (e.g. the token-authentication notice), the workers'
    stdout/stderr (they stay in the session's log files, /tmp/ray/session_latest/logs), Ray
    Data's INFO lines and its progress-bar hints are hidden, so a user sees the package's lines
    and Ray's errors.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    verbose = logging.getLogger(PACKAGE_LOGGER).isEnabledFor(logging.DEBUG)
    if not verbose:
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # read when ray.data loads
        # Ray Data's hints on how to turn its progress bars on or off (a WARNING with
        # --no-progress)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if config.address:
        ray.init(address=config.address, **quiet)
        return
    ray.init(num_cpus=config.num_cpus, include_dashboard=config.include_dashboard, **quiet)
