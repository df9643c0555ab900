"""Final training of a chosen network with the paper's recipe, on Ray Train.

    python jobs/train.py --genotype RUN/export/genotype.json --recipe cifar --gpu
    ray job submit --working-dir . -- python jobs/train.py --recipe imagenet \\
        --genotype /shared/run/export/genotype.json --task /shared/imagenet \\
        --teacher /shared/teacher.pt --gpu --out /shared/final-imagenet
    python jobs/train.py --smoke-test     # a tiny network on digits, 1 epoch of 2 batches

Recipes (`hgnas_ray.training.recipes`): cifar (1440 epochs, SGD Nesterov, lr 0.1 per 256 images,
cosine, weight decay 5e-4, label smoothing 0.1, mixup 0.2, random erasing, AutoAugment, crop +
flip) and imagenet (480 epochs, weight decay 4e-5, squeeze-excite, optional distillation from
--teacher). --epochs shortens a run (e.g. for a test). Workers: --workers, or with --gpu one per
GPU of the cluster. Results in --out: metrics.json (test accuracy, per-epoch history, costs) and
weights.safetensors; Ray Train's runs and checkpoints in --out/runs. Re-running the same command
continues from the latest checkpoint (an unreadable one is named and the one before it is used);
the same command with a larger --epochs trains further.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from hgnas_ray.cli import OneLineParser, run_reporting_errors
from hgnas_ray.cli.log import configure_logging
from hgnas_ray.errors import ConfigError, DataError

log = logging.getLogger("hgnas_ray.jobs.train")
DEFAULT_TASKS = {"cifar": "cifar10"}  # imagenet: an ImageFolder folder, given with --task
SMOKE_GENOTYPE = ('{"space": "macro", "stem_channels": 8, "stages": [{"cell": {"space": "cell", '
                  '"ops": ["conv", "none", "none", "none", "none", "none"], "kernels": [3, 0, 0, '
                  '0, 0, 0], "edges": [[0, 1], [0, 7], [1, 7]]}, "channels": 16, "stride": 2, '
                  '"repeats": 1}], "final_channels": 32}')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="train.py", description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", help="genotype file: a search's export/genotype.json, or "
                                           "one genotype as `hgnas space sample` prints it")
    parser.add_argument("--recipe", choices=("cifar", "imagenet"), help="the paper's recipe")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train this many epochs instead of the recipe's (1440 / 480)")
    parser.add_argument("--data", default=None, metavar="ROOT",
                        help="data root holding the task's folder (default: HGNAS_DATA)")
    parser.add_argument("--task", default=None, metavar="NAME|PATH",
                        help="task name (cifar10, cifar100, digits) or an ImageFolder folder / "
                             ".npz file; default cifar10 for the cifar recipe")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="results folder (default: final-<recipe> beside the genotype file)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray Train workers (default: one per GPU of the cluster with "
                             "--gpu, else 1)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--teacher", default=None, metavar="MODEL.PT",
                        help="TorchScript teacher to distil from (its logits over the task's "
                             "classes for the same normalised images)")
    parser.add_argument("--max-batches-per-epoch", type=int, default=None, metavar="K",
                        help="short epochs, for a test")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B",
                        help="images per worker and step (cifar 64, imagenet 128); the learning "
                             "rate scales with the global batch")
    parser.add_argument("--seed", type=int, default=None, help="weights, order, augmentation (0)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: RAY_ADDRESS, else start Ray here)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="a tiny network on the digits task, 1 epoch of 2 batches, in a "
                             "temporary folder unless --out is given")
    args = parser.parse_args(argv)
    if not args.smoke_test and (args.genotype is None or args.recipe is None):
        parser.error("--genotype and --recipe are required (or pass --smoke-test)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_reporting_errors("train.py", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if not args.smoke_test:
        return train(args)
    with tempfile.TemporaryDirectory(prefix="hgnas_smoke_") as tmp:
        if args.genotype is None:
            args.genotype = str(Path(tmp) / "genotype.json")
            Path(args.genotype).write_text(SMOKE_GENOTYPE + "\n")
        args.recipe = args.recipe or "cifar"
        args.task = args.task or "digits"
        args.epochs = args.epochs or 1
        args.max_batches_per_epoch = args.max_batches_per_epoch or 2
        args.batch_size = args.batch_size or 16
        args.out = args.out or str(Path(tmp) / "final")
        return train(args)


def train(args: argparse.Namespace) -> int:
    """Check every input, start or join Ray, train, write the results (see the module doc)."""
    from hgnas_ray.space.genotypes import genotype_hash
    from hgnas_ray.training.final import read_genotype_file, read_teacher
    from hgnas_ray.training.recipes import get_recipe

    recipe = get_recipe(args.recipe).replace(
        epochs=args.epochs, batch_size=args.batch_size,
        max_batches_per_epoch=args.max_batches_per_epoch, seed=args.seed)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1; got {args.workers}")
    genotype, skeleton = read_genotype_file(args.genotype)
    train_data, test_data = _load_task(args)
    teacher = read_teacher(args.teacher, train_data.info) if args.teacher else None
    out = Path(args.out or Path(args.genotype).parent / f"final-{args.recipe}").resolve()
    _init_ray(args)
    workers = _workers(args)
    log.info("final training (%s recipe, %d epochs) of %s on %s: %d worker(s), %s each; "
             "runs in %s", recipe.name, recipe.epochs, genotype_hash(genotype),
             train_data.info.name, workers,
             "1 GPU" if args.gpu else f"{args.cpus_per_worker:g} CPU", out / "runs")
    return _train_and_write(args, recipe, genotype, skeleton, train_data, test_data, teacher,
                            workers, out)


def _train_and_write(args, recipe, genotype, skeleton, train_data, test_data, teacher, workers,
                     out: Path) -> int:
    from hgnas_ray.distributed.final_train import train_final_ray
    from hgnas_ray.distributed.pretrain import RayTrainSettings
    from hgnas_ray.training.final import write_results

    settings = RayTrainSettings(storage_path=str(out / "runs"), workers=workers,
                                use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker)
    start = time.perf_counter()
    outcome = train_final_ray(genotype, train_data, test_data, recipe, settings,
                              teacher=teacher, skeleton=skeleton)
    metrics = final_metrics(args, recipe, genotype, skeleton, train_data, test_data, workers,
                            outcome, time.perf_counter() - start)
    write_results(out, metrics, outcome.state)
    print(f"trained {metrics['epochs']} epoch(s) ({recipe.name} recipe; resumed from epoch "
          f"{outcome.resumed_from}): test accuracy {metrics['test_accuracy']:.2f} % on "
          f"{metrics['task']['test_images']} {metrics['task']['name']} test images; "
          f"{metrics['params']} params, {metrics['macs']} MACs (squeeze-excite "
          f"{'on' if recipe.squeeze_excite else 'off'}) -> {out}")
    return 0


def final_metrics(args, recipe, genotype, skeleton, train_data, test_data, workers, outcome,
                  seconds: float) -> dict:
    """metrics.json: the result, what produced it, and the per-epoch history."""
    from hgnas_ray.nn.builder import TaskShape, genotype_cost
    from hgnas_ray.space.genotypes import genotype_hash

    info = train_data.info
    task = TaskShape(info.num_classes, info.input_shape[1], info.input_shape[0])
    cost = genotype_cost(genotype, task, skeleton, squeeze_excite=recipe.squeeze_excite)
    last = outcome.history[-1] if outcome.history else {}
    return {
        "test_accuracy": last.get("test_accuracy"), "epochs": int(last.get("epoch", 0)),
        "resumed_from": outcome.resumed_from, "seconds_this_run": seconds,
        "params": cost.params, "macs": cost.macs, "flops": cost.flops,
        "squeeze_excite": recipe.squeeze_excite,
        "units": {"test_accuracy": "percent, on the task's test split after the last epoch",
                  "params": "trainable parameters of the trained network, squeeze-excite "
                            "blocks included when squeeze_excite is true",
                  "macs": "multiply-accumulates of one image", "flops": "2 x macs"},
        "genotype": genotype.to_dict(), "hash": genotype_hash(genotype),
        "recipe": recipe.to_dict(), "teacher": args.teacher,
        "task": {"name": info.name, "num_classes": info.num_classes,
                 "input_shape": list(info.input_shape), "train_images": len(train_data),
                 "test_images": len(test_data)},
        "workers": workers, "gpu": args.gpu, "global_batch": workers * recipe.batch_size,
        "lr": recipe.lr(workers * recipe.batch_size), "history": outcome.history,
    }


def _load_task(args: argparse.Namespace):
    """The task's train split and its test split (or val, for ImageNet-style folders)."""
    from hgnas_ray.training.candidates import TaskConfig

    name = args.task or DEFAULT_TASKS.get(args.recipe)
    if name is None:
        raise ConfigError(f"the {args.recipe} recipe needs --task: an ImageFolder folder (with "
                          "train/ and val/ or test/) or a .npz file")
    task = TaskConfig(task=name, root=args.data)
    train_data = task.load("train")
    try:
        return train_data, task.load("test")
    except DataError as err:
        try:
            return train_data, task.load("val")
        except DataError:
            raise err from None


def _init_ray(args: argparse.Namespace) -> None:
    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.runtime import init_ray

    address = args.address or os.environ.get("RAY_ADDRESS")  # set under `ray job submit`
    init_ray(RayConfig(address=address))


def _workers(args: argparse.Namespace) -> int:
    """--workers, else one per GPU of the cluster with --gpu, else 1."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if args.workers is not None:
        if args.gpu and args.workers > gpus:
            log.warning("--workers %d with --gpu but the cluster has %d GPU(s) now: training "
                        "waits until an autoscaler adds the rest", args.workers, gpus)
        return args.workers
    if not args.gpu:
        return 1
    if gpus < 1:
        raise ConfigError("--gpu but the Ray cluster has no GPUs now; drop --gpu, or pass "
                          "--workers N for an autoscaling cluster whose GPU nodes are not up yet")
    return gpus


if __name__ == "__main__":
    sys.exit(main())
