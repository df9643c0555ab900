"""`hgnas pretrain macro` and `hgnas generate macro`: the sequence generator.

`pretrain macro` runs three stages, each skipped when its output exists and matches:
histories (HL-Evo over the small grid, or the folder given by --histories) -> training (Ray
Train with --workers N >= 1, resumable from OUT/runs; in this process with --workers 0) ->
the artifact OUT/artifact.json + OUT/weights/seqgen.safetensors.
`generate macro` prints one macro genotype per line, as `hgnas space sample --space macro` does.
Budgets name their unit in the flag: --max-params (parameters) and --max-macs (multiply-
accumulates per sample; FLOPs = 2 x MACs).

On a cluster, the full grid (3 class counts x 3 input sizes x 7 budgets) is one command:

    ray job submit -- hgnas pretrain macro --cell-artifact DIR --out DIR --grid full --workers 8

(histories: one Ray task per setting; training: Ray Train with 8 DDP workers; add --gpu for one
GPU per worker; OUT must be on storage every node sees.)
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

from hgnas_ray.cli.log import quiet_logging
from hgnas_ray.errors import ConfigError

logger = logging.getLogger(__name__)
SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)\s*$", re.IGNORECASE)
SMOKE_EPOCHS = 3


def count_type(flag: str):
    """argparse type for a budget: a positive count, e.g. 1e6, 1000000, 1M, 450k."""
    def parse(text: str) -> int:
        if "flop" in text.lower():
            raise argparse.ArgumentTypeError(
                f"{flag} takes MACs per sample, not FLOPs (FLOPs = 2 x MACs): for a budget of "
                f"N FLOPs pass {flag} N/2; got {text!r}" if flag == "--max-macs" else
                f"{flag} counts parameters; got {text!r}")
        match = COUNT.match(text)
        if match is None:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive count such as 1e6, "
                                             f"1000000 or 1M; got {text!r}")
        value = int(float(match.group(1)) * SUFFIXES[match.group(2).lower()])
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be >= 1; got {text!r}")
        return value
    return parse


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


# ---------------------------------------------------------------------- pretrain
def register_pretrain(commands: argparse._SubParsersAction) -> None:
    macro = commands.add_parser(
        "macro", help="train the sequence generator (macro networks) on HL-Evo histories",
        description="Stages: histories (HL-Evo searches over a grid of tasks and budgets into "
                    "OUT/histories, or --histories DIR) -> training (Ray Train with --workers "
                    "N, checkpoints in OUT/runs; in this process with --workers 0) -> artifact "
                    "(OUT/artifact.json + OUT/weights/seqgen.safetensors). Each stage is "
                    "skipped when its output exists and matches; re-running resumes.")
    macro.add_argument("--cell-artifact", required=True,
                       help="cell-generator artifact (its clusters are the stage vocabulary)")
    macro.add_argument("--out", required=True, help="artifact folder")
    macro.add_argument("--histories", default=None,
                       help="use this folder of history files instead of writing OUT/histories")
    macro.add_argument("--grid", choices=("small", "full"), default="small",
                       help="settings of the histories stage (small: 3 tasks x 2 budgets)")
    macro.add_argument("--evaluations", type=_positive, default=None,
                       help="HL-Evo evaluations per setting (default 200; smoke test 24)")
    macro.add_argument("--max-epochs", type=_positive, default=None,
                       help=f"training epochs (default 30; smoke test {SMOKE_EPOCHS})")
    macro.add_argument("--workers", type=int, default=1,
                       help="Ray workers (DDP training, one history setting each); 0: no Ray")
    macro.add_argument("--gpu", action="store_true", help="one GPU per Ray Train worker")
    macro.add_argument("--cpus-per-worker", type=float, default=1.0)
    macro.add_argument("--storage", default=None, help="Ray Train runs (default OUT/runs)")
    macro.add_argument("--model", choices=("tiny", "small"), default=None,
                       help="transformer size (default small; smoke test tiny)")
    macro.add_argument("--batch-size", type=_positive, default=None, help="per worker (64)")
    macro.add_argument("--lr", type=float, default=None, help="(1e-3)")
    macro.add_argument("--top-fraction", type=float, default=None,
                       help="best fraction of each setting's networks trained on (0.25)")
    macro.add_argument("--seed", type=int, default=None, help="(0)")
    macro.add_argument("--smoke-test", action="store_true",
                       help="the same stages on the small grid, cut down to minutes")
    macro.add_argument("--address", default=None,
                       help="Ray cluster to join (default: RAY_ADDRESS, else start Ray here)")
    macro.add_argument("--ray-cpus", type=int, default=None,
                       help="CPUs of a Ray started here (default: all)")
    macro.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    macro.set_defaults(run=run_pretrain_macro)


def macro_config(args: argparse.Namespace):
    from dataclasses import replace

    from hgnas_ray.generator.macro.pretrain import MacroPretrainConfig
    from hgnas_ray.models.seqgen.model import small_config, tiny_config

    config = MacroPretrainConfig()
    model = args.model or ("tiny" if args.smoke_test else "small")
    epochs = args.max_epochs or (SMOKE_EPOCHS if args.smoke_test else config.train.epochs)
    train = replace(config.train, epochs=epochs, **{k: v for k, v in (
        ("batch_size", args.batch_size), ("lr", args.lr), ("seed", args.seed)) if v is not None})
    config = replace(config, train=train,
                     model=tiny_config() if model == "tiny" else small_config())
    if args.top_fraction is not None:
        config = replace(config, top_fraction=args.top_fraction)
    return config.validate()


def run_pretrain_macro(args: argparse.Namespace) -> int:
    from hgnas_ray.generator.macro.pretrain import cell_artifact_info, pretrain_macro

    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0; got {args.workers}")
    config = macro_config(args)  # bad options fail here, before Ray starts
    cell_artifact_info(args.cell_artifact)  # and a bad cell artifact
    out = Path(args.out).expanduser().resolve()
    trainer = _trainer(args, out)
    with quiet_logging(args.quiet):
        if args.workers:
            _init_ray(args)
        histories = _histories_stage(args, out)
        manifest = pretrain_macro(histories, args.cell_artifact, out, config, trainer)
    training = manifest["training"]
    print(f"macro generator -> {out}: {manifest['data']['selected']} networks of "
          f"{len(manifest['data']['settings'])} settings, {training['epochs']} epoch(s), final "
          f"loss {training['history'][-1]['loss']:.4f}")
    return 0


def _trainer(args: argparse.Namespace, out: Path):
    """In this process with --workers 0; else Ray Train (settings checked before Ray starts)."""
    if not args.workers:
        from hgnas_ray.generator.macro.pretrain import LocalSeqGenTrainer

        return LocalSeqGenTrainer()
    from hgnas_ray.distributed.macro_pretrain import RaySeqGenTrainer
    from hgnas_ray.distributed.pretrain import RayTrainSettings

    return RaySeqGenTrainer(RayTrainSettings(
        storage_path=str(Path(args.storage or out / "runs").resolve()), workers=args.workers,
        use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker))


def _init_ray(args: argparse.Namespace) -> None:
    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.runtime import init_ray

    address = args.address or os.environ.get("RAY_ADDRESS")  # set under `ray job submit`
    init_ray(RayConfig(address=address, num_cpus=None if address else args.ray_cpus))


def _histories_stage(args: argparse.Namespace, out: Path) -> Path:
    if args.histories is not None:
        folder = Path(args.histories).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"--histories {folder} is not a folder")
        return folder
    from dataclasses import replace

    from hgnas_ray.search import histories

    settings = histories.SMALL_GRID if args.grid == "small" else histories.FULL_GRID
    config = histories.smoke_config() if args.smoke_test else histories.HistoryConfig()
    if args.evaluations is not None:
        config = replace(config, evaluations=args.evaluations)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    runner = histories.run_in_process
    if args.workers:
        from hgnas_ray.distributed.histories import ray_runner

        runner = ray_runner(num_gpus=1.0 if args.gpu else 0.0)
    logger.info("histories: %d settings, %d evaluations each -> %s", len(settings),
                config.evaluations, out / "histories")
    return histories.write_histories(out / "histories", settings, args.cell_artifact, config,
                                     runner)


# ---------------------------------------------------------------------- generate
def register_generate(commands: argparse._SubParsersAction) -> None:
    macro = commands.add_parser(
        "macro", help="print macro networks written by the sequence generator, one per line",
        description="Writes layouts conditioned on the task and the budget (every token that "
                    "would break the macro space's rules or the budget is masked), fills each "
                    "stage with a cell of its cluster from the cell generator, checks the exact "
                    "cost, and prints one macro genotype JSON per line (as `hgnas space sample "
                    "--space macro`).")
    macro.add_argument("--artifact", required=True, help="macro-generator artifact folder")
    macro.add_argument("--cell-artifact", required=True,
                       help="the cell-generator artifact it was trained with")
    macro.add_argument("--classes", type=_positive, required=True, help="number of classes")
    macro.add_argument("--input-size", type=_positive, required=True,
                       help="input height = width (pixels)")
    macro.add_argument("--in-channels", type=_positive, default=3)
    macro.add_argument("--max-params", type=count_type("--max-params"), default=None,
                       help="parameter budget (count, e.g. 1e6 or 1M)")
    macro.add_argument("--max-macs", type=count_type("--max-macs"), default=None,
                       help="MAC budget: multiply-accumulates per sample, e.g. 225M (MACs, not "
                            "FLOPs: FLOPs = 2 x MACs)")
    macro.add_argument("-n", type=int, default=1, help="how many networks (default 1)")
    macro.add_argument("--seed", type=int, default=0)
    macro.add_argument("--temperature", type=float, default=1.0,
                       help="softmax temperature of the transformer (default 1.0)")
    macro.add_argument("--min-budget-share", type=float, default=0.0,
                       help="keep only networks using at least this share of the budget's "
                            "tightest limit, e.g. 0.8 (default 0: any network within budget)")
    macro.set_defaults(run=run_generate_macro)


def run_generate_macro(args: argparse.Namespace) -> int:
    from hgnas_ray.generator.macro import MacroGenerator
    from hgnas_ray.nn.budget import Budget
    from hgnas_ray.nn.builder import TaskShape
    from hgnas_ray.space import format_genotype

    if args.n < 0:
        raise ConfigError(f"-n must be >= 0; got {args.n}")
    if not args.temperature > 0:
        raise ConfigError(f"--temperature must be > 0; got {args.temperature}")
    generator = MacroGenerator.load(args.artifact, args.cell_artifact)
    task = TaskShape(args.classes, args.input_size, args.in_channels)
    budget = Budget(args.max_params, args.max_macs)
    for genotype in generator.sample(task, budget, args.n, args.temperature, args.seed,
                                     args.min_budget_share):
        print(format_genotype(genotype), flush=True)
    return 0
