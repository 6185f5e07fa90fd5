"""The ``a2qhls`` command line: ``inspect``, ``build``, ``cosim``, ``train``.

Each subcommand lives in its own module ``a2qhls/cli/<name>.py`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their subcommand runs, so ``inspect`` never imports torch.
User errors (:class:`a2qhls.errors.A2QError`) print one line on stderr and
exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import A2QError

# name -> (module, one-line help). Listed explicitly: no registry.
SUBCOMMANDS = {
    "inspect": ("a2qhls.cli.inspect", "per-layer accumulator sizing of a QONNX model"),
    "build": ("a2qhls.cli.build", "generate a Vitis HLS C++ project from a QONNX model"),
    "cosim": ("a2qhls.cli.cosim", "compile a generated project with g++ and compare bit for bit"),
    "train": ("a2qhls.cli.train", "train an A2Q/A2Q+ quantized MLP or CNN and export it to QONNX"),
}

EXIT_USER_ERROR = 2


def _load(module: str):
    return importlib.import_module(module)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2qhls",
        description="Accumulator-aware quantized networks (A2Q, A2Q+) to verified Vitis HLS dataflow hardware.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        if only is None or only == name:
            try:
                _load(module).add_arguments(p)
            except ImportError:
                if only == name:
                    raise
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen subcommand's module is imported.
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    debug = "--debug" in argv
    try:
        parser = build_parser(only=chosen or "")
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USER_ERROR
        return int(_load(SUBCOMMANDS[args.command][0]).run(args) or 0)
    except A2QError as e:
        if debug:
            raise
        print(f"a2qhls: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("a2qhls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
