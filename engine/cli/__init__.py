"""`hardaug` command line: parse options, build configs, call the library, show progress.

One module per subcommand, each with `register(subparsers)`. Building the parser imports the engines'
option modules (and with them Polars and NumPy, about 0.1 s), never a model, torch, vLLM or CTranslate2:
those load only when a command runs.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys

from engine.cli import backtranslate, compare, doctor, eda, filter, mine, oof, paraphrase, run
from engine.errors import InputError

COMMANDS = (oof, mine, eda, backtranslate, paraphrase, filter, compare, run, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardaug",
        description="Targeted data augmentation: find the samples a classifier gets wrong, understand them, "
        "augment only those, and measure whether it helped.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def os_error_message(exc: OSError) -> str | None:
    """A full disk, a read-only file system or a permission error as one line with the fix; None for others."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk is full{where}. Free some space (or choose another output folder) and run the same command "
            "again: finished parts are kept and skipped, and no output was left half-written."
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write{where}: {exc.strerror}. Choose a folder you can write, or fix its permissions."
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except InputError as exc:  # a user's mistake (bad files, option values a config refuses): one line, no traceback
        print(f"hardaug {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's faults, not bugs: one line that says what to do
        message = os_error_message(exc)
        if message is None or args.verbose:
            raise
        print(f"hardaug {args.command}: error: {message}", file=sys.stderr)
        return 1
