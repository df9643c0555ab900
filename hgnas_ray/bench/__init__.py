"""Benchmarks that measure the project against external ground truth (Ray-free core).

`Nb201Table` (the NAS-Bench-201 accuracy lookup) is exported here; the benchmark modules
(`proxy_validation`, `generator_quality`) are imported by name, as they pull in more.
"""

from hgnas_ray.bench.nb201_table import NB201_TABLE_FILE, Nb201Table

__all__ = ["NB201_TABLE_FILE", "Nb201Table"]
