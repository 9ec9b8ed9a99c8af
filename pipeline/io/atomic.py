r"""Atomic, durable writes: a file is either complete or absent, never half-written.

Every output of the pipeline goes through :func:`atomic_write`: the content goes to a hidden
temporary file beside the target (``.<name>.partial-XXXX<suffixes>``), is flushed to disk and
renamed over the target, which also replaces (never writes through) a planted link.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json(folder / "a.json", {"x": 1}).read_text()
    '{\n  "x": 1\n}\n'
    >>> sorted(p.name for p in folder.iterdir())      # no temporary file left behind
    ['a.json']
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.errors import UsageError

TEMP_MARK = ".partial-"  # hidden temp files: .<target name>.partial-XXXX<suffixes>


def sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_arrays(target: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write numpy arrays as safetensors, atomically.

    safetensors stores each array's raw buffer, so arrays are made C-contiguous first
    (a transposed view would otherwise come back scrambled).
    """
    from safetensors.numpy import save_file

    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return atomic_write(target, lambda p: save_file(contiguous, str(p)))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", suffix=suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp's 0600 would hide outputs from colleagues
        with open(tmp_path, "rb") as fh:  # on disk before the rename: never a renamed stub
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)  # replaces a planted symlink, never writes through it
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def all_or_nothing(outputs: list[Path]) -> Iterator[None]:
    """Remove every path of ``outputs`` if the block fails: never a partial set of files."""
    try:
        yield
    except BaseException:
        for p in outputs:
            with contextlib.suppress(OSError):
                p.unlink()
        raise


def remove_stale_temps(target: str | Path) -> int:
    """Delete what a killed :func:`atomic_path` left beside ``target`` (its hidden temp file);
    return how many were removed."""
    target = Path(target)
    suffix = "".join(target.suffixes) or ".tmp"
    removed = 0
    for p in target.parent.glob(f".{glob.escape(target.name + TEMP_MARK)}*{glob.escape(suffix)}"):
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


def atomic_write(target: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` then atomically rename the result to ``target``."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def copy_file(src: str | Path, target: str | Path) -> Path:
    """Copy ``src`` to ``target`` atomically (a killed copy leaves no truncated file)."""
    return atomic_write(target, lambda p: shutil.copyfile(src, p))


def write_json(target: str | Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(target, lambda p: p.write_text(text))


def write_csv(target: str | Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a CSV table, the first row's keys its header."""
    def writer(p: Path) -> None:
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["x"])
            w.writeheader()
            w.writerows(rows)

    return atomic_write(target, writer)


def write_text(target: str | Path, text: str) -> Path:
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))



def check_writable_dir(out: Path) -> None:
    """Create ``out`` if needed and prove it writable; else a :class:`UsageError` (exit 2)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{out}: output folder is not writable ({exc.strerror or exc})") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
