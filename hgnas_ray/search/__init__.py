"""Search: the search job's configuration (`config`) and loop (`job`), and the search strategies.

Candidates are evaluated by `hgnas_ray.evaluation.Evaluator`; Ray stays in `hgnas_ray.distributed`.
"""
