"""`hgnas pretrain cells` and `hgnas generate cells`: train a cell generator, sample from it.
(`pretrain macro` and `generate macro`, the sequence generator's, live in `hgnas_ray.cli.macro`.)

`pretrain cells` trains on Ray Train with --workers N >= 1 (Ray is imported only then) or in this
process with --workers 0. `jobs/pretrain.py` takes the same options, for `ray job submit`.
`generate cells` prints one genotype per line as `hgnas space sample` does (cell JSON, or the
NAS-Bench-201 arch string for an nb201 generator), so `hgnas score` and `hgnas space describe`
read the output directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path

from hgnas_ray.cli import macro
from hgnas_ray.cli.log import quiet_logging
from hgnas_ray.cli.options import check_out_dir, seed
from hgnas_ray.corpus import CORPUS_SPACES
from hgnas_ray.errors import ConfigError, DataError


def register(sub: argparse._SubParsersAction) -> None:
    _register_pretrain(sub)
    _register_generate(sub)


# ---------------------------------------------------------------------- pretrain
def _register_pretrain(sub: argparse._SubParsersAction) -> None:
    pretrain = sub.add_parser("pretrain", help="pretrain generative models")
    commands = pretrain.add_subparsers(dest="pretrain_command", required=True,
                                       parser_class=type(pretrain))
    cells = commands.add_parser(
        "cells", help="train the cell generator (G-VAE, clusters, CCNF) on a scored corpus",
        description="Reads CORPUS/cells and CORPUS/scores, trains the G-VAE and the CCNF (on Ray "
                    "Train with --workers N, checkpointing every epoch into OUT/runs) and writes "
                    "the artifact OUT/artifact.json + OUT/weights/*.safetensors. Re-running with "
                    "the same --out resumes the training runs from their latest checkpoints (a "
                    "larger --max-epochs trains further).")
    add_pretrain_arguments(cells)
    cells.set_defaults(run=run_pretrain)
    macro.register_pretrain(commands)


def add_pretrain_arguments(parser: argparse.ArgumentParser, corpus_required: bool = True) -> None:
    """The options of `hgnas pretrain cells`, shared with jobs/pretrain.py."""
    parser.add_argument("--corpus", required=corpus_required,
                        help="scored corpus folder (cells/ and scores/)")
    parser.add_argument("--out", required=corpus_required, help="artifact folder")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="epochs of both models (default 10)")
    parser.add_argument("--gvae-epochs", type=int, default=None, help="overrides --max-epochs")
    parser.add_argument("--ccnf-epochs", type=int, default=None, help="overrides --max-epochs")
    parser.add_argument("--workers", type=int, default=1,
                        help="Ray Train workers (DDP); 0 trains in this process without Ray")
    parser.add_argument("--gpu", action="store_true", help="one GPU per Ray Train worker")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--max-failures", type=int, default=1,
                        help="worker-group restarts from the latest checkpoint")
    parser.add_argument("--storage", default=None,
                        help="Ray Train runs folder (default OUT/runs; on a cluster: shared)")
    parser.add_argument("--space", choices=CORPUS_SPACES, default=None,
                        help="check the corpus is of this space (default: the corpus's)")
    parser.add_argument("--proxies", default=None,
                        help="comma-separated ZC proxies (default: those of scoring.json)")
    parser.add_argument("--log-scale", default=None,
                        help="proxies to log1p before normalising, comma-separated, or 'none' "
                             "(default: params, macs, synflow, snip, grad_norm where present)")
    parser.add_argument("--hidden", type=int, default=None, help="G-VAE graph-conv width (512)")
    parser.add_argument("--gvae-layers", type=int, default=None, help="graph convolutions (4)")
    parser.add_argument("--latent", type=int, default=None, help="latent size (256)")
    parser.add_argument("--decoder-hidden", type=int, default=None, help="(512)")
    parser.add_argument("--ccnf-hidden", type=int, default=None, help="(512)")
    parser.add_argument("--ccnf-layers", type=int, default=None, help="concat-squash layers (3)")
    parser.add_argument("--ccnf-method", default=None, help="ODE solver (dopri5)")
    parser.add_argument("--ccnf-step-size", type=float, default=None,
                        help="fixed-grid solvers (rk4, euler ...): step as a fraction of [0, T]")
    parser.add_argument("--ccnf-tol", type=float, default=None, help="atol = rtol (1e-5)")
    parser.add_argument("--batch-size", type=int, default=None, help="per worker (64)")
    parser.add_argument("--lr", type=float, default=None, help="(1e-3)")
    parser.add_argument("--clusters", type=int, default=None, help="GMM components (32)")
    parser.add_argument("--holdout", type=float, default=None,
                        help="held-out fraction of the labelled cells (0.05)")
    parser.add_argument("--ccnf-condition", choices=("measured", "predicted"), default=None,
                        help="CCNF conditions: measured normalised ZC (default) or the G-VAE's "
                             "predicted condition")
    parser.add_argument("--seed", type=seed, default=None, help="(0)")
    parser.add_argument("--config", default=None, help="YAML file of PretrainConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config field, e.g. --set gvae.kl_weight=0.2")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: RAY_ADDRESS, else start Ray here)")
    parser.add_argument("--ray-cpus", type=int, default=None,
                        help="CPUs of a Ray started here (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


logger = logging.getLogger(__name__)


def pretrain_config(args: argparse.Namespace):
    """The validated `PretrainConfig` of a YAML file, --set overrides and the flags."""
    from hgnas_ray.config import load_config
    from hgnas_ray.generator.cells.pretrain import PretrainConfig

    config = load_config(PretrainConfig, args.config, args.set)
    gvae = _override(config.gvae, hidden_dim=args.hidden, num_layers=args.gvae_layers,
                     latent_dim=args.latent, decoder_hidden=args.decoder_hidden)
    ccnf = _override(config.ccnf, hidden_dim=args.ccnf_hidden, num_layers=args.ccnf_layers,
                     method=args.ccnf_method, step_size=args.ccnf_step_size,
                     atol=args.ccnf_tol, rtol=args.ccnf_tol)
    train = dict(batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    gvae_train = _override(config.gvae_train, epochs=args.gvae_epochs or args.max_epochs, **train)
    ccnf_train = _override(config.ccnf_train, epochs=args.ccnf_epochs or args.max_epochs, **train)
    return _override(
        config, gvae=gvae, ccnf=ccnf, gvae_train=gvae_train, ccnf_train=ccnf_train,
        proxies=_names(args.proxies), space=args.space, log_scaled=_log_scaled(args.log_scale),
        n_clusters=args.clusters, holdout_fraction=args.holdout,
        ccnf_condition=args.ccnf_condition, seed=args.seed).validate()


def _override(config, **values):
    given = {k: v for k, v in values.items() if v is not None}
    return replace(config, **given) if given else config


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"expected comma-separated names; got {text!r}")
    return names


def _log_scaled(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return () if text.strip().lower() == "none" else _names(text)


def run_pretrain(args: argparse.Namespace) -> int:
    from hgnas_ray.generator.cells.pretrain import LocalTrainers, pretrain_cells

    config = pretrain_config(args)  # bad options fail here, before Ray starts
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0; got {args.workers}")
    out = check_out_dir(args.out).resolve()
    _check_corpus_folder(Path(args.corpus).expanduser())
    with quiet_logging(args.quiet):
        if args.workers == 0:
            manifest = pretrain_cells(args.corpus, out, config, LocalTrainers())
        else:
            manifest = _pretrain_on_ray(args, config, out)
    _print_summary(manifest, out)
    return 0


def _check_corpus_folder(corpus: Path) -> None:
    """Cell and score shards are there: a wrong --corpus fails here, before Ray starts (their
    contents are read, and checked, by the pretraining)."""
    from hgnas_ray.corpus import cell_shards, default_scores_dir, list_shards

    cell_shards(corpus)
    if not list_shards(default_scores_dir(corpus)):
        raise DataError(f"corpus {corpus} has no ZC scores (no scores/part-*.parquet); score it "
                        f"first: `hgnas corpus score --corpus {corpus}`")


def _pretrain_on_ray(args: argparse.Namespace, config, out: Path) -> dict:
    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.pretrain import RayTrainers, RayTrainSettings
    from hgnas_ray.distributed.runtime import init_ray
    from hgnas_ray.generator.cells.pretrain import pretrain_cells

    settings = RayTrainSettings(storage_path=str(Path(args.storage or out / "runs").resolve()),
                                workers=args.workers, use_gpu=args.gpu,
                                cpus_per_worker=args.cpus_per_worker,
                                max_failures=args.max_failures)
    trainers = RayTrainers(settings)  # validates the settings before Ray starts
    address = args.address or os.environ.get("RAY_ADDRESS")  # set under `ray job submit`
    init_ray(RayConfig(address=address, num_cpus=None if address else args.ray_cpus))
    logger.info("training on Ray Train: %d worker(s), %s each; runs in %s", args.workers,
                "1 GPU" if args.gpu else f"{args.cpus_per_worker:g} CPU", settings.storage_path)
    return pretrain_cells(args.corpus, out, config, trainers)


def _print_summary(manifest: dict, out: Path) -> None:
    data, training = manifest["data"], manifest["training"]
    seconds = sum(manifest["timings_seconds"].values())
    print(f"cell generator ({manifest['space']} space, proxies {','.join(manifest['proxies'])}) "
          f"-> {out}: {data['train_cells']} training cells, {data['heldout_cells']} held out, "
          f"{data['unlabelled']} excluded from the ZC targets (NaN/not ok); "
          f"{manifest['clusters']['n_components']} clusters; G-VAE {training['gvae']['epochs']} "
          f"epoch(s), CCNF {training['ccnf']['epochs']} epoch(s); {seconds:.1f} s")


# ---------------------------------------------------------------------- generate
def _register_generate(sub: argparse._SubParsersAction) -> None:
    generate = sub.add_parser("generate", help="sample from pretrained generators")
    commands = generate.add_subparsers(dest="generate_command", required=True,
                                       parser_class=type(generate))
    cells = commands.add_parser(
        "cells", help="print cells sampled from a cell-generator artifact, one per line",
        description="Samples distinct valid cells conditioned on a cluster (--cluster K, or "
                    "'best': the highest measured mean of --proxy) or a ZC vector (--condition, "
                    "in the proxies' units). Prints one genotype per line (NAS-Bench-201 arch "
                    "strings for an nb201 generator).")
    cells.add_argument("--artifact", required=True, help="artifact folder")
    cells.add_argument("-n", type=int, default=1, help="how many distinct cells (default 1)")
    target = cells.add_mutually_exclusive_group()
    target.add_argument("--cluster", default=None, help="cluster id, or 'best' (default best)")
    target.add_argument("--condition", default=None,
                        help="comma-separated ZC vector, one value per proxy, in proxy units")
    target.add_argument("--list-clusters", action="store_true",
                        help="print the clusters as JSON lines instead of sampling")
    cells.add_argument("--proxy", default=None, help="proxy that ranks clusters for 'best' "
                                                     "(default: the artifact's first)")
    cells.add_argument("--temperature", type=float, default=None,
                       help="base-noise scale tau (default 0.4)")
    cells.add_argument("--seed", type=seed, default=0)
    cells.add_argument("--max-draws", type=int, default=None,
                       help="give up after this many draws (default max(10 n, 64))")
    cells.set_defaults(run=run_generate)
    macro.register_generate(commands)


def run_generate(args: argparse.Namespace) -> int:
    from hgnas_ray.generator import CellGenerator, GenerationWarning, nb201_arch
    from hgnas_ray.space import format_genotype

    if args.n < 0:
        raise ConfigError(f"-n must be >= 0; got {args.n}")
    generator = CellGenerator.load(args.artifact)
    if args.list_clusters:
        for cluster in generator.clusters():
            print(json.dumps(cluster), flush=True)
        return 0
    request = _sampling_request(args, generator)
    nb201 = generator.space == "nb201"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GenerationWarning)  # reported below, in one line
        report = generator.sample_report(
            args.n, temperature=args.temperature, seed=args.seed, max_draws=args.max_draws,
            **request)
    for cell in report.cells:  # NAS-Bench-201 cells always decode to a real one
        print(format_genotype(nb201_arch(cell) if nb201 else cell), flush=True)
    if not report.complete:
        logger.warning("hgnas: warning: %d of %d distinct cells in %d draws (%d duplicates); "
                       "raise --max-draws or --temperature for more", len(report.cells), args.n,
                       report.draws, report.duplicates)
    return 0


def _sampling_request(args: argparse.Namespace, generator) -> dict:
    if args.condition is not None:
        try:
            values = [float(v) for v in args.condition.split(",")]
        except ValueError:
            raise ConfigError(f"--condition must be comma-separated numbers, one per proxy "
                              f"({','.join(generator.proxies)}); got {args.condition!r}") from None
        return {"condition": values}
    if args.cluster in (None, "best"):
        return {"cluster": generator.best_cluster(args.proxy)}
    try:
        return {"cluster": int(args.cluster)}
    except ValueError:
        raise ConfigError(f"--cluster must be an integer id or 'best'; got "
                          f"{args.cluster!r}") from None

