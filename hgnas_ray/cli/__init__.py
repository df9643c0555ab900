"""The `hgnas` command line. Each subcommand lives in its own module and registers a parser.

Messages of the package (progress, notices) go through `logging` (loggers under "hgnas_ray");
`configure_logging` (`hgnas_ray.cli.log`) shows them as plain lines on stderr. The entry points
(`main` here and each `jobs/*.py`) call it once. Results go to stdout; each error is one
"hgnas: error: ..." line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hgnas_ray.cli.log import configure_logging, quiet_logging
from hgnas_ray.errors import HgnasError

__all__ = ["OneLineParser", "build_parser", "configure_logging", "main", "quiet_logging"]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line on stderr, with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    configure_logging()
    try:
        return int(args.run(args) or 0)
    except HgnasError as err:
        print(f"hgnas: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hgnas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hgnas space sample ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
