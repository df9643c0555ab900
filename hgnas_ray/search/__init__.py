"""Search: strategies (ask/tell: random, evolution, generative, hl-evo), the budgeted macro space,
fitness, the run store, the proxy cache and the search loop;
plus the search job's configuration (`config`) and its stages (`pipeline`).

Candidates are evaluated by `hgnas_ray.evaluation.Evaluator`; Ray stays in `hgnas_ray.distributed`.
`pretrained` (the cell generator as a search component) is not imported here: it loads
torch-geometric, which only the generative strategy's factory needs.
"""

from hgnas_ray.search.cache import ProxyCache, scoring_setting
from hgnas_ray.search.fitness import Fitness
from hgnas_ray.search.generative import GenerativeSearch
from hgnas_ray.search.hlevo import HierarchicalSpace, HLEvolution
from hgnas_ray.search.loop import Progress, cached_evaluate, run_search, serial_evaluate
from hgnas_ray.search.macro_space import MacroHierarchy, RandomCells
from hgnas_ray.search.spaces import GenotypeSpace, SearchSpace
from hgnas_ray.search.store import RunStore
from hgnas_ray.search.strategy import (
    Evaluated,
    RandomSearch,
    RegularizedEvolution,
    Strategy,
    available_strategies,
    create_strategy,
    register_strategy,
)

__all__ = ["Evaluated", "Fitness", "GenerativeSearch", "GenotypeSpace", "HLEvolution",
           "HierarchicalSpace", "MacroHierarchy", "Progress", "ProxyCache", "RandomCells",
           "RandomSearch", "RegularizedEvolution", "RunStore", "SearchSpace", "Strategy",
           "available_strategies", "cached_evaluate", "create_strategy", "register_strategy",
           "run_search", "scoring_setting", "serial_evaluate"]
