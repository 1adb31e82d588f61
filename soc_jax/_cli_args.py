"""Argument checks and error handling shared by every ``soc-jax`` sub-command (one home).

A new user's mistakes must give ONE line that names the flag (or the file) and exit status 2, as
argparse itself does, never a traceback. Two layers make that hold for every command:

1. **At parse time**: give each option a ``type=`` from this module. A bad value then stops in
   argparse with ``soc-jax synth: error: argument --n-sites: must be an integer >= 1, got '0'``::

       from soc_jax._cli_args import HelpFormatter, nonneg_float, output_dir, positive_int

       p = subparsers.add_parser("calibrate", help="...", description="...",
                                 formatter_class=HelpFormatter)   # shows every default
       p.add_argument("--n-sites", type=positive_int, default=300, help="number of sites")
       p.add_argument("--noise", type=nonneg_float, default=0.2, help="noise sigma (1)")
       p.add_argument("--profiles", type=existing_file, required=True, help="profiles NetCDF")
       p.add_argument("--out", type=output_dir, default="results/calibrate", help="output folder")

2. **At run time**: `soc_jax.cli.main` runs every sub-command through `run_command`, which turns
   the known user errors (`USER_ERRORS`: a missing or unreadable file, a ``ValueError`` from data
   validation such as `soc_jax.data.validate_profiles`) into one line and exit 2. So a command only
   has to raise ``FileNotFoundError``/``ValueError`` with a message that names the file, flag or
   profile; set the environment variable ``SOC_JAX_TRACEBACK=1`` to get the full traceback.

This module imports only the standard library, so ``soc-jax --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

__all__ = [
    "ArgumentParser",
    "add_command",
    "add_run_options",
    "HelpFormatter",
    "USER_ERRORS",
    "comma_choices",
    "existing_dir",
    "existing_file",
    "float_in",
    "int_in",
    "nonneg_float",
    "nonneg_int",
    "one_line",
    "output_dir",
    "output_problem",
    "preflight",
    "positive_float",
    "positive_int",
    "run_command",
    "seed_value",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: ...)`` after an option's help and keeps the description's layout.

    Flags (default False) and options without a default (None) get no ``(default: ...)``.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ONE line on stderr (and exit status 2).

    ``soc-jax synth: error: argument --n-sites: must be an integer >= 1, got '0' (see soc-jax
    synth --help)``; argparse's usage block is left to ``--help``. `soc_jax.cli` makes every
    sub-command's parser one of these.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _int(text: str, rule: str) -> int:
    """``text`` as an integer; ``1e4``-style is accepted when it is an exact integer (``2.5e0``
    is not), so large counts can be written as a user thinks of them."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"must be an integer {rule}, got {text!r}") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"must be an integer {rule} (1e4-style only if exact), got {text!r}"
        )
    if value.adjusted() > 30:
        raise argparse.ArgumentTypeError(f"must be an integer {rule}, got {text!r} (too large)")
    return int(value)


def _float(text: str, rule: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number {rule}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number {rule}, got {text!r}")
    return value


def int_in(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer in ``[lo, hi]`` (either end may be None: open)."""
    return _in_range(_int, "an integer", lo, hi)


def float_in(lo: float | None = None, hi: float | None = None) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite number in ``[lo, hi]`` (None: open at that end)."""
    return _in_range(_float, "a number", lo, hi)


def _in_range(convert: Callable, what: str, lo, hi) -> Callable[[str], Any]:
    """The ``type=`` of `int_in` and `float_in`: ``convert`` the text, then check the range."""
    rule = _rule(lo, hi)

    def parse(text: str):
        value = convert(text, rule)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {what} {rule}, got {text!r}")
        return value

    parse.__name__ = f"{what.split()[-1]} {rule}"
    return parse


def _rule(lo, hi) -> str:
    def fmt(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    if lo is not None and hi is not None:
        return f"within {fmt(lo)}..{fmt(hi)}"
    if lo is not None:
        return f">= {fmt(lo)}"
    if hi is not None:
        return f"<= {fmt(hi)}"
    return ""


def positive_int(text: str) -> int:
    """An argparse ``type=``: an integer >= 1 (counts: sites, iterations, chains)."""
    return _checked_int(text, 1)


def nonneg_int(text: str) -> int:
    """An argparse ``type=``: an integer >= 0 (seeds, offsets)."""
    return _checked_int(text, 0)


MAX_SEED = 2**32 - 1  # seeds go to JAX's PRNGKey and NumPy's generators


def seed_value(text: str) -> int:
    """An argparse ``type=``: a random seed, an integer in 0..2^32 - 1."""
    value = _checked_int(text, 0)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 and <= {MAX_SEED}, got {text!r}")
    return value


def _checked_int(text: str, lo: int) -> int:
    rule = f">= {lo}"
    value = _int(text, rule)
    if value < lo:
        raise argparse.ArgumentTypeError(f"must be an integer {rule}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type=``: a finite number > 0 (resolutions, step sizes)."""
    value = _float(text, "> 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    """An argparse ``type=``: a finite number >= 0 (noise levels, tolerances)."""
    value = _float(text, ">= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def existing_file(text: str) -> Path:
    """An argparse ``type=``: the path of an existing, readable file."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text!r}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text!r} (permission denied)")
    return path


def existing_dir(text: str) -> Path:
    """An argparse ``type=``: the path of an existing folder (inputs: ``--data``, ``--network``)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a folder: {text!r}")
    return path


def comma_choices(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type=``: a comma-separated list of ``choices``, each at most once."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(w.strip() for w in text.split(","))
        bad = [w for w in items if w not in choices]
        if not items or bad or len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(
                f"must be a comma-separated list of {', '.join(choices)} (each once), got {text!r}"
            )
        return items

    parse.__name__ = "list"
    return parse


def output_dir(text: str) -> Path:
    """An argparse ``type=``: an output folder (created later); refuses an existing file, and a
    path inside a file (``notes.txt/run``). Whether it can be written is `preflight`'s probe."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is not a folder")
            break
    return path


def output_problem(path: str | os.PathLike) -> str | None:
    """Why the output folder ``path`` cannot be written, or None if it can.

    The probe does what the command will do: create the folder (and missing parents), write and
    remove a small file. It leaves nothing behind: the folders it created are removed again (the
    command creates them when it writes its first output).
    """
    path = Path(path)
    missing, existing = [], path
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(path)!r}: {str(existing)!r} is not a folder"
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        probe = path / f".soc_jax_write_probe_{os.getpid()}"
        with open(probe, "w") as f:
            f.write("soc_jax checks that it can write here\n")
        probe.unlink()
    except OSError as err:
        return f"cannot write to {str(path)!r} ({err.strerror or err})"
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
    return None


def preflight(args: argparse.Namespace) -> None:
    """Checks before any work: the command's own check (``add_command(check=...)``: checks
    across options, input files, sizes against memory), then that every output folder can be
    written. A refusal is one line naming the flag and exit status 2 (``parser.error``).

    `soc_jax.cli.main` calls this before it imports JAX; nothing is written or compiled before.
    """
    check = getattr(args, "_check", None)
    if check is not None:
        check(args)
    for flag in getattr(args, "_outputs", ()):
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        problem = None if value is None else output_problem(value)
        if problem:
            args._parser.error(f"argument {flag}: {problem}")


# Errors a user causes (a file, a value in their data); anything else is a bug and keeps its
# traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (OS errors as ``'path': reason``)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{os.fspath(err.filename)!r}: {err.strerror}"
    text = " ".join(str(err).split())
    return text or type(err).__name__


def run_command(func: Callable[[argparse.Namespace], int | None], args, prog: str) -> int:
    """Run a sub-command; a user error (`USER_ERRORS`) becomes one line on stderr and exit 2.

    Args:
        func: the sub-command's entry point (``args.func``).
        args: the parsed namespace.
        prog: the command as the user typed it, e.g. ``"soc-jax synth"``.

    Returns:
        The exit status: ``func``'s result (0 if None), 2 for a user error, 130 on Ctrl-C.
    """
    try:
        return int(func(args) or 0)
    except USER_ERRORS as err:
        if os.environ.get("SOC_JAX_TRACEBACK"):
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "_on_interrupt", None)
        if hint is None and getattr(args, "resume", None) is not None:  # has --resume
            hint = "continue with the same command and --resume"
        print(f"{prog}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


def add_command(
    subparsers,
    name: str,
    run: Callable,
    *,
    help: str,
    description: str,
    check: Callable[[argparse.Namespace], None] | None = None,
    outputs: tuple[str, ...] = ("--out",),
    on_interrupt: str | None = None,
    **kwargs,
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` (run by ``run(args)``) with the house help formatter.

    Every ``register(subparsers)`` starts here, so each command shows its defaults and carries
    its own parser (``args._parser``) for errors found after parsing.

    Args:
        check: the command's checks before any work (`preflight`): light (no JAX), refusing
            with ``args._parser.error("argument --flag: ...")``.
        outputs: the options naming folders the command writes (probed by `preflight`).
        on_interrupt: what Ctrl-C prints after "interrupted" (default: how to use --resume,
            for a command that has it).
    """
    p = subparsers.add_parser(
        name, help=help, description=description, formatter_class=HelpFormatter, **kwargs
    )
    p.set_defaults(func=run, _parser=p, _check=check, _outputs=outputs)
    if on_interrupt is not None:
        p.set_defaults(_on_interrupt=on_interrupt)
    return p


def add_run_options(
    p: argparse.ArgumentParser,
    *,
    out: str | None,
    seed: str | None = "random seed",
    resume: str | None = None,
    figures: bool = False,
) -> None:
    """Add the options most commands share: ``--out`` (default ``out``; None: required),
    ``--seed`` (help ``seed``; None: no seed), ``--resume`` (help ``resume``; None: none) and
    ``--no-figures`` (when ``figures``)."""
    if out is None:
        p.add_argument("--out", type=output_dir, required=True, help="output folder")
    else:
        p.add_argument("--out", type=output_dir, default=Path(out), help="output folder")
    if seed is not None:
        p.add_argument("--seed", type=seed_value, default=0, help=seed)
    if resume is not None:
        p.add_argument("--resume", action="store_true", help=resume)
    if figures:
        p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
