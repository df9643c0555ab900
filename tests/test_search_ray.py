"""The search loop on a Ray actor pool makes the same choices, with the same scores, as serially."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from hgnas_ray.corpus.scoring import ScoringConfig  # noqa: E402
from hgnas_ray.distributed.search import actor_pool_evaluate  # noqa: E402
from hgnas_ray.search.fitness import Fitness  # noqa: E402
from hgnas_ray.search.loop import run_search, serial_evaluate  # noqa: E402
from hgnas_ray.search.spaces import GenotypeSpace  # noqa: E402
from hgnas_ray.search.store import RunStore  # noqa: E402
from hgnas_ray.search.strategy import create_strategy  # noqa: E402

pytestmark = pytest.mark.ray
SPACE = GenotypeSpace("nb201")
# digits (scikit-learn, offline): tiny images keep the NAS-Bench-201 networks fast
SCORING = ScoringConfig(("synflow", "params"), task="digits", batch_size=16,
                        skeleton_channels=4, skeleton_cells=1).validate()



def _search(evaluate, path):
    strategy = create_strategy("evolution", SPACE, Fitness.parse("synflow"), seed=4,
                               population_size=8, sample_size=3)
    return run_search(strategy, evaluate, RunStore(path, {}), budget=24, batch_size=6)


def test_actor_pool_makes_the_serial_run_s_choices(local_ray, tmp_path):
    from hgnas_ray.corpus.scoring import CorpusScorer

    scorer = CorpusScorer(SCORING.to_dict())
    serial = _search(serial_evaluate(lambda g: scorer.score_one(SPACE.key(g), SPACE.to_text(g))),
                     tmp_path / "serial")
    pool = actor_pool_evaluate(SCORING.to_dict(), 2, SPACE.key, SPACE.to_text)
    parallel = _search(pool, tmp_path / "parallel")
    assert [r["hash"] for r in parallel] == [r["hash"] for r in serial]
    for a, b in zip(serial, parallel, strict=True):
        assert a["synflow"] == pytest.approx(b["synflow"], rel=1e-6)
        assert a["params"] == b["params"]
