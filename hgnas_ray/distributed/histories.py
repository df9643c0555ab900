"""HL-Evo pretraining histories on Ray: one task per (task, budget) setting of the grid.

Settings are independent searches, so they spread over a cluster as plain Ray tasks (one CPU
each by default, a GPU fraction if asked). A setting that fails is logged and the others still
finish and keep their files; the failures are raised together at the end, and a re-run resumes
each unfinished setting from its run store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict

import ray
from ray.exceptions import RayError

from hgnas_ray.errors import ConfigError
from hgnas_ray.search.histories import Runner, SettingJob, run_setting

log = logging.getLogger(__name__)


@ray.remote
def _run_setting(job: dict) -> str:
    import torch

    torch.set_num_threads(1)  # one setting per CPU: avoid oversubscription
    return run_setting(SettingJob(**job))


def ray_runner(num_cpus: float = 1.0, num_gpus: float = 0.0) -> Runner:
    """A `Runner` for `write_histories` (Ray must be up)."""
    def run(jobs: Sequence[SettingJob]) -> list[str]:
        task = _run_setting.options(num_cpus=num_cpus, num_gpus=num_gpus)
        pending = {task.remote(asdict(job)): job for job in jobs}
        done_paths, failed = [], []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                done_paths.append(ray.get(ready[0]))
                log.info("history %d/%d written: %s", len(done_paths), len(jobs), done_paths[-1])
            except RayError as err:
                failed.append(f"setting {job.index}: {type(err).__name__}: {err}"[:300])
                log.error("history setting %d failed: %s", job.index, err)
        if failed:
            raise ConfigError(f"{len(failed)} of {len(jobs)} history settings failed (re-run "
                              f"to resume them): {failed[0]}")
        return done_paths
    return run
