"""Task datasets behind one factory, a preparation step, and deterministic probe batches.

Public API:
    load_task(name_or_path, split="train", root=None, download=False, cache_dir=None)
        -> ArrayDataset; names: cifar10, cifar100, digits, imagefolder, npz (available_tasks());
        or a path to an ImageFolder folder, a .npz file, or a prepared folder.
    prepare_data(source, out=None, *, task=None, splits=None, root=None, cache_dir=None,
                 skip_corrupt=False, progress=True) -> {split: Path of the .npz written}
    probe_batch(dataset, size=64, seed=0, class_balanced=False) -> (x, y)
    probe_batches(dataset, n_batches, size=64, seed=0, class_balanced=False) -> [(x, y), ...]
    probe_indices(labels, n_batches, size, seed=0, class_balanced=False) -> (n_batches, size)
    resolve_data_root(root) -> Path | None    # root argument / --data > HGNAS_DATA > None
    resolve_cache_dir(cache_dir) -> Path      # argument > HGNAS_CACHE > ~/.cache/hgnas_ray
    TaskInfo(name, num_classes, input_shape (C, H, W), mean, std, class_names)
    ArrayDataset(images uint8 (N,H,W,C), labels int64 (N,), info): len, [i], batch(indices),
        subset(indices); a torch Dataset.
    register_task(name) decorator, available_tasks()

Data is found through arguments and environment variables, never a hard-coded path:
``HGNAS_DATA`` (data root, e.g. the folder containing ``cifar10/``) and ``HGNAS_CACHE``
(prepared arrays). Nothing is downloaded or written unless asked (``download=True``,
``prepare_data``). Failures raise ``DataError``/``ConfigError``; unknown task names raise
``RegistryError`` listing the valid names.
"""

from hgnas_ray.data import tasks as _tasks  # noqa: F401  (registers the built-in tasks)
from hgnas_ray.data.arrays import ArrayDataset, TaskInfo
from hgnas_ray.data.locations import CACHE_ENV, DATA_ENV, resolve_cache_dir, resolve_data_root
from hgnas_ray.data.prepare import prepare_data
from hgnas_ray.data.probe import probe_batch, probe_batches, probe_indices
from hgnas_ray.data.registry import available_tasks, load_task, register_task

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "ArrayDataset",
    "TaskInfo",
    "available_tasks",
    "load_task",
    "prepare_data",
    "probe_batch",
    "probe_batches",
    "probe_indices",
    "register_task",
    "resolve_cache_dir",
    "resolve_data_root",
]
