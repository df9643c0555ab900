"""The `hgnas` command line. Each subcommand lives in its own module and registers a parser.

Messages of the package (progress, notices) go through `logging` (loggers under "hgnas_ray");
`configure_logging` (`hgnas_ray.cli.log`) shows them as plain lines on stderr. The entry points
(`main` here and each `jobs/*.py`) call it once. Results go to stdout; each error is one
"hgnas: error: ..." line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hgnas_ray.cli.log import configure_logging, quiet_logging
from hgnas_ray.errors import HgnasError

__all__ = ["OneLineParser", "build_parser", "configure_logging", "main", "quiet_logging",
           "run_reporting_errors"]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line on stderr, with exit code 2.

    Every parser (the command and each subcommand) takes `--verbose`, so it may come anywhere
    on the line; `args.verbose` is False unless it was given.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="also show detail lines and the messages of Ray and torch "
                               "themselves (hidden by default)")

    def parse_args(self, args=None, namespace=None) -> argparse.Namespace:  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        if not hasattr(parsed, "verbose"):
            parsed.verbose = False
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    from hgnas_ray.cli import bench, corpus, data, generate, score, space

    parser = OneLineParser(prog="hgnas", description="Hierarchical generative NAS on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    space.register(sub)
    data.register(sub)
    score.register(sub)
    bench.register(sub)
    corpus.register(sub)
    generate.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_reporting_errors("hgnas", lambda: args.run(args))


def run_reporting_errors(prog: str, run: Callable[[], int | None]) -> int:
    """Run an entry point's body and return its exit code. A `HgnasError`, or an `OSError` (the
    file system refused: permission, disk full, a file where a folder should be), becomes one
    "<prog>: error: ..." line on stderr and exit code 2; Ctrl-C is 130; a closed stdout pipe
    (`... | head`) ends quietly with 0."""
    try:
        return int(run() or 0)
    except HgnasError as err:
        print(f"{prog}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:
        print(f"{prog}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
