"""What a run was made from, so that ``--resume`` continues only the same run (one home).

Every ``soc-jax`` verb with ``--resume`` records, when a run starts, the SHA-256 of the bytes of
each input file (`input_identity`) next to its settings (``settings.json`` of ``soc-jax
calibrate``, the checkpoint header of ``soc-jax train``). On ``--resume`` it checks, before any
work, that there is a run to continue (`require_run`), that the input files are the same
(`check_inputs`) and that the settings are (`check_settings`); each refusal is a `ResumeError`
whose message is one line that names the folder and what differs. A folder written before the
hash was recorded resumes, with a warning that the data's identity cannot be checked.

Standard library only (``soc-jax --help`` stays fast).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping

__all__ = [
    "BLOCK_BYTES",
    "InputsChanged",
    "NothingToResume",
    "ResumeError",
    "SettingsChanged",
    "check_inputs",
    "check_run",
    "check_settings",
    "file_sha256",
    "input_identity",
    "require_run",
    "settings_diff",
]

BLOCK_BYTES = 1 << 20
"""Bytes read at a time when hashing (1 MiB: memory stays small for files of many GB)."""

_SHOWN = 8  # hex digits of a hash shown in messages


class ResumeError(ValueError):
    """``--resume`` cannot continue the run in a folder (the message is one line)."""


class NothingToResume(ResumeError):
    """``--resume`` on a folder without a run in it."""


class InputsChanged(ResumeError):
    """``--resume`` with input data that differ from the run's."""


class SettingsChanged(ResumeError):
    """``--resume`` with settings that differ from the run's."""


def file_sha256(path: str | os.PathLike, block: int = BLOCK_BYTES) -> str:
    """The SHA-256 of the bytes of the file at ``path`` (hex), read ``block`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def input_identity(files: Mapping[str, tuple[str, str | os.PathLike]]) -> dict[str, dict]:
    """The identity of a run's input files, to record with its settings (JSON-serialisable).

    Args:
        files: ``{name: (flag, path)}``: each input's name (``"profiles.nc"``), the option that
            gives it (``"--data"``) and its path.

    Returns:
        ``{name: {"flag", "path", "sha256", "bytes"}}`` (path as given; size in bytes).
    """
    return {
        name: {
            "flag": flag,
            "path": os.fspath(path),
            "sha256": file_sha256(path),
            "bytes": os.path.getsize(path),
        }
        for name, (flag, path) in files.items()
    }


def require_run(out: str | os.PathLike, needed: Iterable[str]) -> None:
    """Refuse ``--resume`` into ``out`` unless it holds every file of ``needed``.

    Raises:
        NothingToResume: ``out`` is not a folder, or one of ``needed`` is missing in it.
    """
    out = os.fspath(out)
    if not os.path.isdir(out):
        why = "not a folder" if os.path.exists(out) else "no such folder"
        raise NothingToResume(f"--resume: nothing to resume in {out} ({why})")
    for name in needed:
        if not os.path.isfile(os.path.join(out, name)):
            raise NothingToResume(f"--resume: nothing to resume in {out} (no {name})")


def check_run(
    out: str | os.PathLike, needed: Iterable[str], record: str, inputs: Mapping
) -> str | None:
    """`require_run` (``needed`` in ``out``), then `check_inputs` against the identity recorded
    under ``"inputs"`` in the JSON file ``out/record`` (one of ``needed``).

    Returns:
        None, or the warning line of a run that recorded no identity.

    Raises:
        ResumeError: nothing to resume, ``record`` unreadable, or other input files.
    """
    require_run(out, needed)
    path = os.path.join(os.fspath(out), record)
    try:
        with open(path) as f:
            recorded = json.load(f).get("inputs")
    except (OSError, ValueError, AttributeError) as err:
        raise ResumeError(f"--resume: cannot read {path}: {' '.join(str(err).split())}") from None
    return check_inputs(out, recorded, inputs)


def check_inputs(out: str | os.PathLike, recorded: Mapping | None, now: Mapping) -> str | None:
    """Compare a run's recorded input identity with this run's (`input_identity` both).

    Returns:
        None when they match; a warning line when ``recorded`` is None (a folder written
        before the identity was recorded: it cannot be checked).

    Raises:
        InputsChanged: an input differs, was added or was left out; the message names it.
    """
    out = os.fspath(out)
    if recorded is None:
        return (
            f"--resume: {out} records no hash of its input data (written by an older "
            "soc_jax): the data's identity cannot be checked"
        )
    advice = "use a new --out or the original data"
    for name, old in recorded.items():
        new = now.get(name)
        if new is None:
            raise InputsChanged(
                f"--resume: {out} was run with {old['flag']} {old['path']}, now none is "
                f"given; {advice}"
            )
        if new["sha256"] != old["sha256"]:
            raise InputsChanged(
                f"--resume: {out} was run on {old['path']} with sha256 "
                f"{old['sha256'][:_SHOWN]}..., {new['flag']} now gives {new['path']} with "
                f"{new['sha256'][:_SHOWN]}...; {advice}"
            )
    for name, new in now.items():
        if name not in recorded:
            raise InputsChanged(
                f"--resume: {out} was run without {new['flag']} {name}, now {new['flag']} "
                f"gives {new['path']}; {advice}"
            )
    return None


def _is_long(value) -> bool:
    return isinstance(value, list | tuple) and len(value) > 4


def _shown(a, b) -> tuple[str, str]:
    """Two values of a setting for a message: a long list (and the other list with it) as its
    length."""
    if _is_long(a) or _is_long(b):
        return tuple(
            f"[{len(v)} items]" if isinstance(v, list | tuple) else repr(v) for v in (a, b)
        )
    return repr(a), repr(b)


def settings_diff(old: Mapping, new: Mapping, keys: Iterable[str] | None = None) -> list[str]:
    """``"key old -> new"`` for each of ``keys`` (default: all of both) whose values differ.

    Tuples and lists compare equal (a setting read back from JSON is a list); a key missing
    on one side shows as None.
    """

    def norm(v):
        return [norm(x) for x in v] if isinstance(v, list | tuple) else v

    if keys is None:
        keys = list(dict.fromkeys([*old, *new]))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if norm(a) != norm(b):
            sa, sb = _shown(a, b)
            text = f"{k} {sa} -> {sb}"
            if sa == sb:
                text += " (different items)"
            out.append(text)
    return out


def check_settings(
    out: str | os.PathLike, old: Mapping, new: Mapping, keys: Iterable[str] | None = None
) -> None:
    """Refuse ``--resume`` when the settings ``keys`` (default: all) differ from the run's.

    Raises:
        SettingsChanged: one line naming each setting that differs (old -> new).
    """
    diff = settings_diff(old, new, keys)
    if diff:
        raise SettingsChanged(
            f"--resume: {os.fspath(out)} was run with different settings ({'; '.join(diff)}); "
            "use a new --out or the original settings"
        )
