"""The ``a2qhls`` command line: ``inspect``, ``build``, ``cosim``, ``train``, ``sweep``.

Each subcommand lives in its own module ``a2qhls/cli/<name>.py`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their subcommand runs, so ``inspect`` never imports torch.
Exit statuses (every command): 0 success; 1 the command's own negative result
(``inspect``: a width above the model's target; ``cosim``: a mismatch); 2 a usage error or a
user error (:class:`a2qhls.errors.A2QError`), printed as one line on stderr (``--debug`` shows
the traceback instead); ``cosim`` 3: C++ and the model agree but the QONNX reference could not
run; 130 interrupted (Ctrl-C); 141 stdout closed early (``a2qhls inspect M | head``), quietly.
"""
from __future__ import annotations

import importlib
import os
import sys

from ..errors import A2QError

# name -> (module, one-line help). Listed explicitly: no registry.
SUBCOMMANDS = {
    "inspect": ("a2qhls.cli.inspect", "per-layer accumulator sizing of a QONNX model"),
    "build": ("a2qhls.cli.build", "generate a Vitis HLS C++ project from a QONNX model"),
    "cosim": ("a2qhls.cli.cosim", "compile a generated project with g++ and compare bit for bit"),
    "train": ("a2qhls.cli.train", "train an A2Q/A2Q+ quantized MLP or CNN and export it to QONNX"),
    "sweep": ("a2qhls.cli.sweep", "train over a grid of quantizers and widths (on Ray); results table and plots"),
}

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shells report it


class _UsageError(Exception):
    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


def _parser_class():
    """argparse with one-line usage errors: ``a2qhls CMD: error: MESSAGE; see a2qhls CMD --help``
    (argparse is imported here, inside main's handling of Ctrl-C)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            raise _UsageError(self.prog, message)

    return _Parser


def _load(module: str):
    return importlib.import_module(module)


def _one_line(text: str) -> str:
    from ..escape import display

    return display(text, limit=2000)


def _quiet_stdout() -> None:
    """stdout's reader has gone: send what is left to /dev/null so exit does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def build_parser(only: str | None = None):
    """The ``a2qhls`` argument parser (an ``argparse.ArgumentParser``); ``only``: the one
    subcommand whose options are loaded (``""``: none)."""
    import argparse

    parser = _parser_class()(
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
    """Run the command line; returns the exit status (see the module doc)."""
    try:
        rc = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return rc
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("a2qhls: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
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
    except _UsageError as e:
        print(f"{e.prog}: error: {_one_line(str(e))}; see {e.prog} --help", file=sys.stderr)
        return EXIT_USER_ERROR
    except A2QError as e:
        if debug:
            raise
        print(f"a2qhls: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
