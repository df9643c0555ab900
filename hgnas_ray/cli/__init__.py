"""The `hgnas` command line. Each subcommand lives in its own module and registers a parser."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hgnas_ray.errors import HgnasError


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
